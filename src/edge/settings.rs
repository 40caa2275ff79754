//! The Settings page's "Storage backends" section, as htmx fragments: the list (built-in,
//! the operator's shared ones, the user's own), add, edit/rename inline, delete, and Test (a
//! real write/read/delete round trip, shown in the row).
//!
//! Validation is the JSON API's ([`backend_record`]); this module only turns forms into its
//! arguments and results into HTML. It reads the user's records through the vault's summaries,
//! which carry secret *names* only: must not fetch, hold or render a secret. Secrets are
//! write-only here; a blank secret on edit keeps the stored one.

use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use larder_actors::UserId;
use larder_actors::vault::{RecordKind, RecordSummary, VaultError, VaultMsg};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::api::storage::backend_record;
use super::auth::PageUser;
use super::error::WebError;
use crate::storage::registry::{Provenance, ResolveError, S3Fields, shared_prefix};

/// How long Test waits for a backend before calling it unreachable.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where an `s3` backend's objects live.
pub struct S3Location {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub path_style: bool,
}

/// One backend as the list shows it.
pub struct BackendView {
    pub name: String,
    /// `local` or `s3`.
    pub kind: &'static str,
    /// `builtin`, `shared` or `user`.
    pub provenance: &'static str,
    /// What people read: "built-in", "provided by the operator", "yours".
    pub origin: &'static str,
    /// The vault record id: set for the user's own (editable) backends only.
    pub id: Option<Uuid>,
    /// What the Test route is addressed by: the id for the user's own, else the name.
    pub key: String,
    pub s3: Option<S3Location>,
    pub uri: String,
}

/// The list, as the templates loop over it.
pub struct BackendList(Vec<BackendView>);

impl BackendList {
    fn iter(&self) -> std::slice::Iter<'_, BackendView> {
        self.0.iter()
    }

    /// Whether any of them is the user's own (else the list says how to add one).
    fn has_own(&self) -> bool {
        self.0.iter().any(|b| b.id.is_some())
    }
}

/// The add and edit forms' values. There is deliberately no secret here: the secret input
/// is always rendered empty.
pub struct BackendForm {
    /// `None` for the add form.
    pub id: Option<Uuid>,
    pub name: String,
    pub fields: S3Fields,
}

impl BackendForm {
    fn new_backend() -> BackendForm {
        BackendForm {
            id: None,
            name: String::new(),
            fields: S3Fields {
                region: "us-east-1".to_owned(),
                path_style: true,
                ..S3Fields::default()
            },
        }
    }

    fn of(r: &RecordSummary) -> BackendForm {
        BackendForm {
            id: Some(r.id),
            name: r.name.clone(),
            fields: S3Fields::read(&r.settings),
        }
    }

    /// Prefix for the form's element ids: the add form and every edit form share a page.
    fn dom(&self) -> String {
        match self.id {
            Some(id) => format!("edit-{id}"),
            None => "add".to_owned(),
        }
    }
}

/// A submitted add or edit form. Not `Debug`: it carries the secret.
#[derive(Deserialize)]
pub struct BackendInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    prefix: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    path_style: Option<String>,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    secret_access_key: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/backends.html")]
struct Section {
    backends: BackendList,
    f: BackendForm,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/backends_row.html")]
struct Row {
    b: BackendView,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/backends_edit.html")]
struct EditRow {
    f: BackendForm,
}

/// The list after a change, with the flash message and (after an add) a fresh add form.
#[derive(Template, WebTemplate)]
#[template(path = "fragments/backends_changed.html")]
struct Changed {
    backends: BackendList,
    message: String,
    add_form: Option<BackendForm>,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/backends_test.html")]
struct TestOutcome {
    ok: bool,
    elapsed_ms: u128,
    detail: String,
}

/// `WebError` for an htmx request: shown in `#flash`.
fn flash(status: StatusCode, message: impl AsRef<str>) -> WebError {
    WebError::new(status, sentence(message.as_ref())).fragment()
}

/// The validation messages are lowercase clauses (the API's wording); the flash shows them as
/// sentences.
fn sentence(m: &str) -> String {
    let Some(first) = m.chars().next() else {
        return String::new();
    };
    let mut out: String = first.to_uppercase().chain(m.chars().skip(1)).collect();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

fn vault_error(e: VaultError) -> WebError {
    let status = match e {
        VaultError::NameTaken { .. } => StatusCode::CONFLICT,
        VaultError::NotFound(_) => StatusCode::NOT_FOUND,
        VaultError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => {
            tracing::error!(error = %e, "vault call failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    flash(status, e.to_string())
}

fn resolve_error(e: ResolveError) -> WebError {
    match e {
        ResolveError::NotFound(_) => flash(StatusCode::NOT_FOUND, e.to_string()),
        other => flash(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

fn no_such_backend() -> WebError {
    flash(StatusCode::NOT_FOUND, "This backend no longer exists")
}

/// The user's own backend records (settings and secret names; never secrets).
async fn records(state: &AppState, user: UserId) -> Result<Vec<RecordSummary>, WebError> {
    state
        .placement
        .vault(user, |r| VaultMsg::List(RecordKind::Backend, r))
        .await
        .map_err(|e| WebError::from(e).fragment())?
        .map_err(vault_error)
}

fn user_record(records: &[RecordSummary], id: &str) -> Result<RecordSummary, WebError> {
    let id: Uuid = id.parse().map_err(|_| no_such_backend())?;
    records
        .iter()
        .find(|r| r.id == id)
        .cloned()
        .ok_or_else(no_such_backend)
}

/// Every backend the user can use, in the registry's order, with where each one stores.
async fn views(state: &AppState, user: UserId) -> Result<BackendList, WebError> {
    let list = state.registry.list(user).await.map_err(resolve_error)?;
    let records = records(state, user).await?;
    Ok(BackendList(
        list.into_iter()
            .map(|info| {
                let (provenance, origin) = match info.provenance {
                    Provenance::Builtin => ("builtin", "built-in"),
                    Provenance::Shared => ("shared", "provided by the operator"),
                    Provenance::User => ("user", "yours"),
                };
                let s3 = match info.provenance {
                    Provenance::Builtin => None,
                    Provenance::Shared => state
                        .config
                        .storage
                        .shared
                        .iter()
                        .find(|s| s.name == info.name)
                        .map(|s| S3Location {
                            endpoint: s.endpoint.as_str().trim_end_matches('/').to_owned(),
                            bucket: s.bucket.clone(),
                            // Each user has their own part of a shared backend.
                            prefix: shared_prefix(s, user),
                            region: s.region.clone(),
                            path_style: s.path_style,
                        }),
                    Provenance::User => records
                        .iter()
                        .find(|r| Some(r.id) == info.id)
                        .map(|r| S3Fields::read(&r.settings))
                        .map(|f| S3Location {
                            endpoint: f.endpoint,
                            bucket: f.bucket,
                            prefix: f.prefix,
                            region: f.region,
                            path_style: f.path_style,
                        }),
                };
                BackendView {
                    key: info
                        .id
                        .map_or_else(|| info.name.clone(), |id| id.to_string()),
                    uri: format!("store://{}/", info.name),
                    kind: info.kind,
                    provenance,
                    origin,
                    id: info.id,
                    s3,
                    name: info.name,
                }
            })
            .collect(),
    ))
}

/// `GET /settings/backends`: the whole section (the Settings page loads it).
pub async fn section(
    State(state): State<AppState>,
    PageUser(session): PageUser,
) -> Result<Response, WebError> {
    Ok(Section {
        backends: views(&state, session.user.id).await?,
        f: BackendForm::new_backend(),
    }
    .into_response())
}

/// Validates a submitted form through the API's rules and stores it.
async fn put(
    state: &AppState,
    user: UserId,
    id: Option<Uuid>,
    form: Result<Form<BackendInput>, FormRejection>,
) -> Result<RecordSummary, WebError> {
    let Form(input) = form.map_err(|e| flash(StatusCode::UNPROCESSABLE_ENTITY, e.body_text()))?;
    let fields = S3Fields {
        endpoint: input.endpoint,
        region: input.region,
        bucket: input.bucket,
        prefix: input.prefix,
        path_style: input.path_style.is_some(),
        access_key_id: input.access_key_id,
    };
    let record = backend_record(
        id,
        input.name.trim(),
        &fields,
        Some(input.secret_access_key),
        &state.registry.reserved_names(),
    )
    .map_err(|m| flash(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    state
        .placement
        .vault(user, |r| VaultMsg::Put(record.clone(), r))
        .await
        .map_err(|e| WebError::from(e).fragment())?
        .map_err(vault_error)
}

/// `POST /settings/backends`: adds an `s3` backend; answers with the list, a fresh add form
/// and a flash message.
pub async fn create(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    form: Result<Form<BackendInput>, FormRejection>,
) -> Result<Response, WebError> {
    let user = session.user.id;
    let saved = put(&state, user, None, form).await?;
    Ok(Changed {
        backends: views(&state, user).await?,
        message: format!("Added “{}”. Press Test to check that it works.", saved.name),
        add_form: Some(BackendForm::new_backend()),
    }
    .into_response())
}

/// `GET /settings/backends/{backend}`: one of the user's backends as a row (leaves the editor).
pub async fn row(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(backend): Path<String>,
) -> Result<Response, WebError> {
    let id: Uuid = backend.parse().map_err(|_| no_such_backend())?;
    let b = views(&state, session.user.id)
        .await?
        .0
        .into_iter()
        .find(|b| b.id == Some(id))
        .ok_or_else(no_such_backend)?;
    Ok(Row { b }.into_response())
}

/// `GET /settings/backends/{backend}/edit`: the row as a form (the secret input left empty).
pub async fn edit(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(backend): Path<String>,
) -> Result<Response, WebError> {
    let records = records(&state, session.user.id).await?;
    let record = user_record(&records, &backend)?;
    Ok(EditRow {
        f: BackendForm::of(&record),
    }
    .into_response())
}

/// `PUT /settings/backends/{backend}`: saves an edit (a new name renames it; a blank secret
/// keeps the stored one); answers with the list and a flash message.
pub async fn update(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(backend): Path<String>,
    form: Result<Form<BackendInput>, FormRejection>,
) -> Result<Response, WebError> {
    let user = session.user.id;
    // Only an existing record is updated: a stale form must not bring a deleted one back.
    let existing = user_record(&records(&state, user).await?, &backend)?;
    let saved = put(&state, user, Some(existing.id), form).await?;
    let message = if saved.name == existing.name {
        format!("Saved “{}”.", saved.name)
    } else {
        format!(
            "Renamed “{}” to “{}”: its URI is now store://{}/.",
            existing.name, saved.name, saved.name
        )
    };
    Ok(Changed {
        backends: views(&state, user).await?,
        message,
        add_form: None,
    }
    .into_response())
}

/// `DELETE /settings/backends/{backend}`: removes one of the user's backends (its objects stay
/// where they are); answers with the list and a flash message.
pub async fn delete(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(backend): Path<String>,
) -> Result<Response, WebError> {
    let user = session.user.id;
    let existing = user_record(&records(&state, user).await?, &backend)?;
    state
        .placement
        .vault(user, |r| VaultMsg::Delete(existing.id, r))
        .await
        .map_err(|e| WebError::from(e).fragment())?
        .map_err(vault_error)?;
    Ok(Changed {
        backends: views(&state, user).await?,
        message: format!(
            "Deleted “{}”. Its objects are still in the bucket.",
            existing.name
        ),
        add_form: None,
    }
    .into_response())
}

/// `POST /settings/backends/{backend}/test`: writes, reads back and deletes a probe object;
/// answers with the outcome for the row (a failing backend is a result, not an error).
pub async fn test(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(backend): Path<String>,
) -> Result<Response, WebError> {
    let resolved = match state.registry.resolve(session.user.id, &backend).await {
        Ok(r) => r,
        Err(e @ ResolveError::Misconfigured { .. }) => {
            return Ok(TestOutcome {
                ok: false,
                elapsed_ms: 0,
                detail: sentence(&e.to_string()),
            }
            .into_response());
        }
        Err(e) => return Err(resolve_error(e)),
    };
    let outcome = tokio::time::timeout(
        TEST_TIMEOUT,
        crate::storage::round_trip(resolved.backend.as_ref()),
    )
    .await;
    Ok(match outcome {
        Ok(trip) => TestOutcome {
            ok: trip.result.is_ok(),
            elapsed_ms: trip.elapsed.as_millis(),
            detail: trip.result.err().map(|e| sentence(&e)).unwrap_or_default(),
        },
        Err(_) => TestOutcome {
            ok: false,
            elapsed_ms: TEST_TIMEOUT.as_millis(),
            detail: format!(
                "The backend did not answer within {} seconds.",
                TEST_TIMEOUT.as_secs()
            ),
        },
    }
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::sentence;

    #[test]
    fn messages_become_sentences() {
        assert_eq!(
            sentence("the bucket is required"),
            "The bucket is required."
        );
        assert_eq!(sentence("Saved."), "Saved.");
        assert_eq!(sentence("\"x\" is taken"), "\"x\" is taken.");
        assert_eq!(sentence(""), "");
    }
}
