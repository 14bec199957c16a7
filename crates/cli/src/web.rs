//! The demo's web pages: the dashboard at `/` and the notes app at `/notes`, built from `web/`
//! (`npm run build`, committed as `web/dist`) and embedded in the binary by `build.rs`.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Every file of `web/dist`: its path under `dist`, and its bytes.
const FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web.rs"));

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The embedded file at `path` (relative to `web/dist`).
pub fn file(path: &str) -> Option<&'static [u8]> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

fn serve(path: &str) -> Response {
    match file(path) {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(path)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no {path} in this build (build web/ with `npm run build`)"),
        )
            .into_response(),
    }
}

/// `/`, `/notes` and `/assets/*`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { serve("index.html") }))
        .route("/notes", get(|| async { serve("notes.html") }))
        .route(
            "/assets/{file}",
            get(|Path(file): Path<String>| async move { serve(&format!("assets/{file}")) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_are_embedded() {
        for page in ["index.html", "notes.html"] {
            let html = String::from_utf8_lossy(file(page).expect(page));
            assert!(
                html.contains("<html") || html.contains("<!doctype html"),
                "{page}"
            );
        }
        assert_eq!(
            content_type("assets/dashboard.js"),
            "text/javascript; charset=utf-8"
        );
        assert!(file("../Cargo.toml").is_none());
    }
}
