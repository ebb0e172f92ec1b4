//! Serves Thinglake's web UI: the single-page app that `services/web/ui` builds with Vite into a
//! `dist/` directory (`index.html` plus content-hashed files under `static/`).
//!
//! [`router`] is merged after the REST API's router in the `thinglake` binary. It answers `/`
//! and every other browser page request (a client-side route such as `/devices/<id>`) with
//! `index.html`, serves the hashed bundle under `/static/`, and never answers for the API: a
//! request under `/api/` that no API route matched, or one that is not a page request, gets the
//! API's own "no such endpoint" JSON. Without a built UI the pages say how to build it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::any;
use tower_http::services::ServeDir;
use tracing::debug;

/// Where Vite puts the bundle inside `dist/` (`build.assetsDir` in `vite.config.ts`); not
/// `assets`, which is a page of the UI.
pub const STATIC_DIR: &str = "static";

/// Hashed bundle files never change under their name.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
/// `index.html` names the current bundle, so browsers must revalidate it.
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// The page served while `dist/` has not been built.
const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Thinglake</title></head>
<body style="font-family: sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>Thinglake</h1>
<p>The platform is running, but its web UI has not been built.</p>
<p>Build it with <code>scripts/run</code> (which does it before starting), or by hand:
<code>cd services/web/ui &amp;&amp; npm ci &amp;&amp; npx vite build</code>, then reload this page.
If the UI is built elsewhere, point <code>THINGLAKE_WEB_DIR</code> (<code>--web-dir</code>)
at its <code>dist</code> directory.</p>
<p>The REST API is available under <code>/api/</code>.</p>
</body></html>"#;

/// The web UI over a built `dist` directory; see the crate documentation for what it answers.
/// The directory is read per request, so a UI built after the start is served without a restart.
pub fn router(dir: impl Into<PathBuf>) -> Router {
    let dir = Arc::new(dir.into());
    let assets = ServeDir::new(dir.join(STATIC_DIR));
    Router::new()
        .nest_service(
            &format!("/{STATIC_DIR}"),
            Router::new().fallback_service(assets).layer(axum::middleware::map_response(immutable)),
        )
        .route("/", any(page))
        .route("/{*path}", any(page))
        .with_state(dir)
}

async fn immutable(mut res: Response) -> Response {
    if res.status().is_success() {
        res.headers_mut().insert(header::CACHE_CONTROL, IMMUTABLE);
    }
    res
}

/// `index.html` for a browser page request; the API's not-found answer for anything else.
async fn page(State(dir): State<Arc<PathBuf>>, req: Request) -> Response {
    if !is_page_request(&req) {
        debug!(path = %req.uri().path(), "no such endpoint");
        return thinglake_api::no_such_endpoint();
    }
    match tokio::fs::read(dir.join("index.html")).await {
        Ok(html) => ([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")), (header::CACHE_CONTROL, NO_CACHE)], html)
            .into_response(),
        Err(e) => {
            debug!(dir = %dir.display(), error = %e, "web UI not built");
            ([(header::CACHE_CONTROL, NO_CACHE)], Html(NOT_BUILT)).into_response()
        }
    }
}

/// A GET or HEAD outside the API, for a path that does not name a file (client-side routes have
/// no extension; a missing `/favicon.ico` is not a page).
fn is_page_request(req: &Request) -> bool {
    let path = req.uri().path();
    let method_ok = req.method() == Method::GET || req.method() == Method::HEAD;
    let api = path == "/api" || path.starts_with("/api/");
    let file = Path::new(path).extension().is_some();
    method_ok && !api && !file
}

#[cfg(test)]
mod tests;
