//! Builds the browser assets: `npm ci` in `static/` (pinned by its lockfile, from the npm
//! registry) and `node build.mjs`, which bundles the island and writes `static/dist/` with
//! precompressed variants. Runs only when the assets' inputs changed.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

const INPUTS: &[&str] = &["package.json", "package-lock.json", "build.mjs", "src"];

fn main() {
    // At run time, not `env!`: a build script binary reused from another checkout (a shared
    // target dir) must still build this checkout's assets.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("static");
    for input in INPUTS {
        println!("cargo:rerun-if-changed=static/{input}");
    }
    println!("cargo:rerun-if-changed=static/dist/manifest.json");

    let installed = root.join("node_modules/.package-lock.json");
    if modified(&installed) < modified(&root.join("package-lock.json")) {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&root));
    }
    let newest_input = INPUTS
        .iter()
        .map(|i| newest(&root.join(i)))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if modified(&root.join("dist/manifest.json")) < newest_input {
        run(Command::new("node").arg("build.mjs").current_dir(&root));
    }
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "cannot run {cmd:?} ({e}): building Larder's browser assets needs Node.js 20+ and npm"
        )
    });
    assert!(
        status.success(),
        "{cmd:?} failed ({status}) while building Larder's browser assets"
    );
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The newest modification time of a file or anything under a directory.
fn newest(path: &Path) -> SystemTime {
    let own = modified(path);
    match std::fs::read_dir(path) {
        Ok(entries) => entries
            .flatten()
            .map(|e| newest(&e.path()))
            .fold(own, SystemTime::max),
        Err(_) => own,
    }
}
