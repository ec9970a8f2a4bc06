//! `/examples/inbox/`: the inbox example page (`examples/inbox` in the
//! repository), served only when `web.examples` is on.
//!
//! The page is the browser half of Herald's loop: a notification bell with
//! the unread count, the message list with Mark read, and an export with a
//! progress bar fed live by `export_progress`, over pusher-js connected to a
//! Pusher-protocol server. Serving it from `herald web` puts it on the same
//! origin as `/v1`, so its calls need no CORS.
//!
//! The files are compiled into the binary (no path to configure, and the
//! page always matches the API of the binary serving it). They are public
//! files: the page reads its account, user and token from the URL's
//! fragment, which never reaches a server.

use axum::{
    http::header,
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};

/// One file of the page: where it is served, its type and its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page's files, as the repository holds them.
const INBOX: &[Asset] = &[
    Asset {
        path: "/examples/inbox/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../examples/inbox/index.html"),
    },
    Asset {
        path: "/examples/inbox/inbox.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../examples/inbox/inbox.js"),
    },
    Asset {
        path: "/examples/inbox/inbox.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../examples/inbox/inbox.css"),
    },
    Asset {
        path: "/examples/inbox/vendor/pusher-js/pusher.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../examples/inbox/vendor/pusher-js/pusher.min.js"),
    },
    Asset {
        path: "/examples/inbox/vendor/pusher-js/pusher.min.js.LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("../../examples/inbox/vendor/pusher-js/pusher.min.js.LICENSE.txt"),
    },
    Asset {
        path: "/examples/inbox/vendor/pusher-js/LICENCE",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("../../examples/inbox/vendor/pusher-js/LICENCE"),
    },
];

/// The example's routes: its files, and `/examples/inbox` redirected to the
/// folder so the page's relative links resolve.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    INBOX
        .iter()
        .fold(Router::new(), |router, asset| {
            let (content_type, body) = (asset.content_type, asset.body);
            router.route(
                asset.path,
                get(move || async move { file(content_type, body) }),
            )
        })
        .route(
            "/examples/inbox",
            get(|| async { Redirect::permanent("/examples/inbox/") }),
        )
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Small files; a developer editing the example sees the change
            // after the next build without fighting a cache.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_only_files_that_are_served() {
        let page = INBOX[0].body;
        for link in ["inbox.js", "inbox.css", "vendor/pusher-js/pusher.min.js"] {
            assert!(page.contains(&format!("\"{link}\"")), "{link}");
            let served = format!("/examples/inbox/{link}");
            assert!(INBOX.iter().any(|a| a.path == served), "{served}");
        }
    }

    #[test]
    fn the_vendored_client_keeps_its_licence() {
        let script = INBOX
            .iter()
            .find(|a| a.path.ends_with("pusher.min.js"))
            .map(|a| a.body)
            .unwrap_or_default();
        assert!(script
            .starts_with("/*! For license information please see pusher.min.js.LICENSE.txt */"));
        assert!(INBOX.iter().any(
            |a| a.path.ends_with("/LICENCE") && a.body.contains("Permission is hereby granted")
        ));
    }
}
