//! The fixture: a real `larder` process on a free port with its own data dir, configured through
//! `LARDER_*` environment variables, killed on drop. Logs go to `<data dir>/../larder.log`.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Larder {
    pub root: Arc<tempfile::TempDir>,
    pub base: String,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_larder")
}

impl Larder {
    /// A node on a fresh data dir.
    pub async fn start() -> Larder {
        Larder::start_with(Arc::new(tempfile::tempdir().unwrap()), &[]).await
    }

    /// A node on `root`'s data dir (reused across restarts), with extra environment.
    pub async fn start_with(root: Arc<tempfile::TempDir>, env: &[(&str, &str)]) -> Larder {
        let data_dir = root.path().join("data");
        let mut vars: Vec<(String, String)> = vec![
            ("LARDER_DATA_DIR".into(), data_dir.display().to_string()),
            ("LARDER_HTTP__ADDR".into(), "127.0.0.1:0".into()),
            ("LARDER_S3__ADDR".into(), "127.0.0.1:0".into()),
            ("RUST_LOG".into(), "info,larder=debug".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let login_url = data_dir.join("login-url");
        let _ = std::fs::remove_file(&login_url);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.path().join("larder.log"))
            .unwrap();
        let child = Command::new(bin())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars.iter().cloned())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn larder");
        let mut larder = Larder {
            root,
            base: String::new(),
            child: Some(child),
            env: vars,
        };
        let url = larder.wait_for(
            || std::fs::read_to_string(&login_url).ok(),
            "the login-url file",
        );
        larder.base = url.trim().split("/login/").next().unwrap().to_owned();
        let health = format!("{}/healthz", larder.base);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&health).await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz never answered; log:\n{}",
                larder.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        larder
    }

    fn wait_for<T>(&mut self, mut probe: impl FnMut() -> Option<T>, what: &str) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "larder exited ({status}) before {what} appeared; log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("larder.log")).unwrap_or_default()
    }

    /// The start-up login link.
    pub fn startup_login_url(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("login-url"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `larder login-link [--user NAME]` against this node.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .args(args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn login_link(&self, user: &str) -> String {
        let out = self.cli(&["login-link", "--user", user]);
        assert!(
            out.status.success(),
            "login-link failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A browser-like client signed in through `login_url`: opens the link, confirms.
    pub async fn sign_in(&self, login_url: &str) -> Session {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let res = confirm_login(&client, &self.base, login_url).await;
        assert_eq!(res.status(), 200, "login should land on the query page");
        assert!(res.url().path() == "/query", "landed on {}", res.url());
        let html = res.text().await.unwrap();
        Session {
            client,
            csrf: csrf_of(&html),
            base: self.base.clone(),
            jar,
        }
    }

    /// Ends the process abruptly (SIGKILL): no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "larder did not stop on SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Larder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Opens a login link in `client` and presses "Sign in" on the confirmation page.
pub async fn confirm_login(
    client: &reqwest::Client,
    base: &str,
    login_url: &str,
) -> reqwest::Response {
    let page = client.get(login_url).send().await.unwrap();
    assert_eq!(
        page.status(),
        200,
        "the login link shows a confirmation page"
    );
    let html = page.text().await.unwrap();
    let field = |name: &str| {
        let marker = format!(r#"name="{name}" value=""#);
        let start = html
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} field in:\n{html}"))
            + marker.len();
        html[start..].split('"').next().unwrap().to_owned()
    };
    client
        .post(format!("{base}/login"))
        .form(&[("token", field("token")), ("nonce", field("nonce"))])
        .send()
        .await
        .unwrap()
}

/// The page's CSRF token, from `<meta name="csrf-token" content="...">`.
pub fn csrf_of(html: &str) -> String {
    let marker = r#"<meta name="csrf-token" content=""#;
    let start = html.find(marker).expect("page has a csrf meta tag") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// A signed-in client: cookie jar plus the CSRF token pages carry.
pub struct Session {
    pub client: reqwest::Client,
    pub csrf: String,
    pub base: String,
    jar: Arc<reqwest::cookie::Jar>,
}

impl Session {
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// The same browser (cookie jar and token) talking to `larder`, e.g. after a restart on
    /// another port (cookies are per host, not per port).
    pub fn on(&self, larder: &Larder) -> Session {
        Session {
            client: self.client.clone(),
            csrf: self.csrf.clone(),
            base: larder.base.clone(),
            jar: self.jar.clone(),
        }
    }

    /// The `Cookie` header this browser sends to the node (for clients other than reqwest).
    pub fn cookie_header(&self) -> String {
        use reqwest::cookie::CookieStore;
        let url: reqwest::Url = self.base.parse().unwrap();
        self.jar
            .cookies(&url)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// The signed-in user's id.
    pub async fn user_id(&self) -> String {
        let me: serde_json::Value = self.get("/api/me").await.json().await.unwrap();
        me["id"].as_str().unwrap().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// A state-changing request as a page makes it (with the CSRF header).
    pub fn with_csrf(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("X-CSRF-Token", &self.csrf)
    }
}

/// Files under `dir` (the range cache aside) whose bytes contain `needle`.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "cache") {
            continue;
        }
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            hits.push(path);
        }
    }
    hits
}
