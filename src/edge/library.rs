//! The saved-queries sidebar of the query page, as htmx fragments: list, save (create or
//! update), open (fills the editor through an `HX-Trigger` event the island listens for), delete.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use larder_actors::library::{LibraryError, LibraryMsg, SaveQuery, SavedQuery};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::auth::PageUser;
use super::error::WebError;

/// A saved query as the sidebar shows it.
pub struct SavedQueryView {
    pub id: String,
    pub name: String,
    pub preview: String,
    pub updated: String,
}

impl From<&SavedQuery> for SavedQueryView {
    fn from(q: &SavedQuery) -> Self {
        let flat: String = q.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let preview = if flat.chars().count() > 80 {
            format!("{}…", flat.chars().take(80).collect::<String>())
        } else {
            flat
        };
        SavedQueryView {
            id: q.id.to_string(),
            name: q.name.clone(),
            preview,
            updated: super::api::rfc3339(q.updated_at),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/saved_queries.html")]
struct SavedQueries {
    queries: Vec<SavedQueryView>,
}

/// The save form's fields; `id` set means "update that saved query".
#[derive(Debug, Default, Deserialize)]
pub struct SaveForm {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub sql: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/save_form.html")]
struct SaveFormFragment {
    form: SaveForm,
    oob: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "fragments/saved.html")]
struct Saved {
    queries: Vec<SavedQueryView>,
    form: SaveForm,
    message: String,
}

fn fragment_error(e: impl Into<WebError>) -> WebError {
    e.into().fragment()
}

async fn views(
    state: &AppState,
    session: &larder_actors::accounts::Session,
) -> Result<Vec<SavedQueryView>, WebError> {
    let list = state
        .placement
        .library(session.user.id, LibraryMsg::List)
        .await
        .map_err(fragment_error)?;
    Ok(list.iter().map(SavedQueryView::from).collect())
}

fn parse_id(raw: &str) -> Result<Uuid, WebError> {
    raw.parse()
        .map_err(|_| WebError::new(StatusCode::NOT_FOUND, "No such saved query.").fragment())
}

/// `GET /queries`: the list.
pub async fn list(
    State(state): State<AppState>,
    PageUser(session): PageUser,
) -> Result<Response, WebError> {
    Ok(SavedQueries {
        queries: views(&state, &session).await?,
    }
    .into_response())
}

/// `GET /queries/new`: an empty save form (the next save creates a new query).
pub async fn new_form(PageUser(_): PageUser) -> Response {
    SaveFormFragment {
        form: SaveForm::default(),
        oob: false,
    }
    .into_response()
}

/// `POST /queries`: saves the editor's SQL under a name; answers with the new list, the form
/// (now bound to the saved query) and a flash message.
pub async fn save(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    form: Result<Form<SaveForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form
        .map_err(|e| WebError::new(StatusCode::UNPROCESSABLE_ENTITY, e.body_text()).fragment())?;
    let id = match form.id.trim() {
        "" => Uuid::now_v7(), // chosen here so a retried save cannot create a duplicate
        raw => parse_id(raw)?,
    };
    let request = SaveQuery {
        id: Some(id),
        name: form.name.clone(),
        sql: form.sql.clone(),
    };
    let saved = state
        .placement
        .library(session.user.id, |r| LibraryMsg::Save(request.clone(), r))
        .await
        .map_err(fragment_error)?
        .map_err(|e| {
            let status = match e {
                LibraryError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
                LibraryError::NameTaken(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            WebError::new(status, e.to_string()).fragment()
        })?;
    Ok(Saved {
        queries: views(&state, &session).await?,
        message: format!("Saved “{}”.", saved.name),
        form: SaveForm {
            id: saved.id.to_string(),
            name: saved.name,
            sql: String::new(),
        },
    }
    .into_response())
}

/// `GET /queries/{id}/open`: binds the save form to the query and tells the island (through
/// the `larder:open-query` event, which names the query) to load its SQL into the editor.
pub async fn open(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = parse_id(&id)?;
    let query = state
        .placement
        .library(session.user.id, |r| LibraryMsg::Get(id, r))
        .await
        .map_err(fragment_error)?
        .ok_or_else(|| {
            WebError::new(StatusCode::NOT_FOUND, "This saved query no longer exists.").fragment()
        })?;
    // The island fetches the SQL itself: a header is no place for up to 100 KB of text.
    let event = serde_json::json!({
        "larder:open-query": { "id": query.id, "name": query.name }
    });
    let mut res = SaveFormFragment {
        form: SaveForm {
            id: query.id.to_string(),
            name: query.name,
            sql: String::new(),
        },
        oob: false,
    }
    .into_response();
    let header = HeaderValue::from_str(&ascii_json(&event.to_string())).map_err(|_| {
        WebError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the query").fragment()
    })?;
    res.headers_mut().insert("HX-Trigger", header);
    Ok(res)
}

/// `DELETE /queries/{id}`: answers with the new list.
pub async fn delete(
    State(state): State<AppState>,
    PageUser(session): PageUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = parse_id(&id)?;
    state
        .placement
        .library(session.user.id, |r| LibraryMsg::Delete(id, r))
        .await
        .map_err(fragment_error)?
        .map_err(|e| WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).fragment())?;
    Ok(SavedQueries {
        queries: views(&state, &session).await?,
    }
    .into_response())
}

/// JSON with every non-ASCII character written as a `\\u` escape, so it fits in a header.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_json_is_ascii_and_still_the_same_json() {
        let original = serde_json::json!({ "sql": "SELECT 'café ☕ 𝄞'\n" });
        let encoded = super::ascii_json(&original.to_string());
        assert!(encoded.is_ascii(), "{encoded}");
        let back: serde_json::Value = serde_json::from_str(&encoded).unwrap();
        assert_eq!(back, original);
    }
}
