//! The browser client, embedded from the repository's `web/` directory at build time and served
//! at `/` (index.html) and `/<file>`.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use include_dir::{include_dir, Dir};

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web");

/// Serves the embedded file at the request path, `index.html` for `/` and for paths ending in
/// `/`, and 404 for anything else.
pub async fn serve_asset(uri: Uri) -> Response {
    let path = asset_path(uri.path());
    let Some(file) = WEB.get_file(&path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let headers = [
        (CONTENT_TYPE, content_type(&path)),
        // The files change with every build and carry no version in their names.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    (headers, file.contents()).into_response()
}

/// Returns the path inside `web/` for a request path.
fn asset_path(request_path: &str) -> String {
    let relative = request_path.trim_start_matches('/');
    if relative.is_empty() || relative.ends_with('/') {
        format!("{relative}index.html")
    } else {
        relative.to_owned()
    }
}

/// Returns the content type for a file name, with `charset=utf-8` for text.
fn content_type(path: &str) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let is_text = mime.type_() == mime_guess::mime::TEXT
        || mime.subtype() == mime_guess::mime::JAVASCRIPT
        || mime.subtype() == mime_guess::mime::JSON;
    let value = if is_text {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    // Content types from mime_guess are ASCII tokens, which are valid header values.
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    async fn fetch(path: &str) -> Response {
        let router = Router::new().fallback_service(get(serve_asset));
        let request = Request::get(path).body(Body::empty()).unwrap();
        router.oneshot(request).await.unwrap()
    }

    fn header(response: &Response, name: axum::http::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    #[tokio::test]
    async fn root_serves_index_html() {
        let response = fetch("/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, CONTENT_TYPE), "text/html; charset=utf-8");
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let index = WEB.get_file("index.html").expect("web/index.html exists");
        assert_eq!(&body[..], index.contents());
    }

    #[tokio::test]
    async fn every_embedded_file_is_served() {
        for file in WEB.files() {
            let path = file.path().to_str().unwrap();
            let response = fetch(&format!("/{path}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header(&response, CONTENT_TYPE),
                content_type(path),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        for path in [
            "/missing.js",
            "/v1/other",
            "/../Cargo.toml",
            "/index.html.bak",
        ] {
            let response = fetch(path).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn post_is_not_allowed() {
        let router = Router::new().fallback_service(get(serve_asset));
        let request = Request::post("/").body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn content_types_match_extensions() {
        let cases = [
            ("index.html", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("icon.png", "image/png"),
            ("data.bin", "application/octet-stream"),
        ];
        for (path, expected) in cases {
            assert_eq!(content_type(path), expected, "{path}");
        }
    }

    #[test]
    fn directory_paths_map_to_index() {
        assert_eq!(asset_path("/"), "index.html");
        assert_eq!(asset_path("/docs/"), "docs/index.html");
        assert_eq!(asset_path("/app.js"), "app.js");
    }
}
