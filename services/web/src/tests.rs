use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt as _;

use super::*;

async fn get(router: Router, method: Method, path: &str) -> (StatusCode, Option<String>, String) {
    let req = Request::builder().method(method).uri(path).body(Body::empty()).expect("request");
    let res = router.oneshot(req).await.expect("infallible");
    let status = res.status();
    let cache = res.headers().get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_string);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("body");
    (status, cache, String::from_utf8_lossy(&bytes).into_owned())
}

fn built_dist() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("index.html"), "<html>the app</html>").expect("write");
    std::fs::create_dir(dir.path().join(STATIC_DIR)).expect("mkdir");
    std::fs::write(dir.path().join(STATIC_DIR).join("index-abc123.js"), "console.log(1)").expect("write");
    dir
}

#[tokio::test]
async fn client_side_routes_get_the_index_page() {
    let dist = built_dist();
    for path in ["/", "/devices", "/devices/6c1c0c52-2d0e-4f0c-9d4e-000000000001", "/login?next=%2Fassets"] {
        let (status, cache, body) = get(router(dist.path()), Method::GET, path).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "<html>the app</html>"), "{path}");
        assert_eq!(cache.as_deref(), Some("no-cache"));
    }
}

#[tokio::test]
async fn bundle_files_are_served_as_immutable() {
    let dist = built_dist();
    let (status, cache, body) = get(router(dist.path()), Method::GET, "/static/index-abc123.js").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "console.log(1)"));
    assert_eq!(cache.as_deref(), Some("public, max-age=31536000, immutable"));
    let (status, cache, _) = get(router(dist.path()), Method::GET, "/static/missing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(cache, None);
}

#[tokio::test]
async fn files_outside_the_dist_directory_are_not_reachable() {
    let dist = built_dist();
    std::fs::write(dist.path().join("secret.txt"), "no").expect("write");
    for path in ["/static/../secret.txt", "/static/%2e%2e/secret.txt", "/secret.txt"] {
        let (status, _, body) = get(router(dist.path()), Method::GET, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}

#[tokio::test]
async fn api_paths_and_non_page_requests_get_the_apis_not_found_json() {
    let dist = built_dist();
    for (method, path) in [(Method::GET, "/api/nope"), (Method::GET, "/api"), (Method::POST, "/devices"), (Method::GET, "/favicon.ico")] {
        let (status, _, body) = get(router(dist.path()), method.clone(), path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!((json["errorCode"].as_u64(), json["message"].as_str()), (Some(32), Some("No such endpoint")));
    }
}

#[tokio::test]
async fn the_apis_routes_win_over_the_ui_when_merged() {
    let dist = built_dist();
    let api = Router::new()
        .route("/api/device/{id}", axum::routing::get(|| async { "device" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "api fallback") });
    let app = api.merge(router(dist.path()));
    assert_eq!(get(app.clone(), Method::GET, "/api/device/1").await.2, "device");
    assert_eq!(get(app.clone(), Method::GET, "/devices/1").await.2, "<html>the app</html>");
}

#[tokio::test]
async fn without_a_built_ui_pages_say_how_to_build_it() {
    let empty = tempfile::tempdir().expect("temp dir");
    let (status, _, body) = get(router(empty.path().join("dist")), Method::GET, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("npm ci") && body.contains("THINGLAKE_WEB_DIR"), "{body}");
}
