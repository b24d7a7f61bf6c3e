//! The browser pages (Processes, System), compiled into the binary.
//!
//! Plain HTML, CSS and JavaScript with no framework and no build step: what
//! is in `assets/` is what the browser gets. The server answers `GET /` and
//! `GET /assets/...` with [`asset`], and sends [`CONTENT_SECURITY_POLICY`]
//! with every page: the pages load nothing from elsewhere, run no inline
//! script, and put every string from the API into the page as text (never
//! as HTML), so a hostile label or log line stays data.

/// The `Content-Security-Policy` header for the pages: only this origin's
/// scripts, styles and connections; no framing (clickjacking), no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the pages: its path under `/`, its bytes, its media type.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
    mime: &'static str,
}

macro_rules! asset {
    ($path:literal, $file:literal, $mime:literal) => {
        Asset {
            path: $path,
            bytes: include_bytes!(concat!("assets/", $file)),
            mime: $mime,
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("/index.html", "index.html", "text/html; charset=utf-8"),
    asset!("/assets/app.css", "app.css", "text/css; charset=utf-8"),
    asset!("/assets/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/assets/icon.svg", "icon.svg", "image/svg+xml"),
    // xterm.js, unchanged from npm: see assets/vendor/README.md.
    asset!(
        "/assets/vendor/xterm.js",
        "vendor/xterm.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/assets/vendor/addon-fit.js",
        "vendor/addon-fit.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/assets/vendor/xterm.css",
        "vendor/xterm.css",
        "text/css; charset=utf-8"
    ),
    asset!(
        "/assets/vendor/LICENSE",
        "vendor/LICENSE",
        "text/plain; charset=utf-8"
    ),
    asset!(
        "/assets/vendor/LICENSE.addon-fit",
        "vendor/LICENSE.addon-fit",
        "text/plain; charset=utf-8"
    ),
];

/// The page or asset served at `path` (the request path, without query),
/// with its media type; `None` for anything else (a 404). `/` is the page;
/// the pages route by the URL's fragment, so no other path is a page.
pub fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
    let path = match path {
        "" | "/" => "/index.html",
        p => p,
    };
    ASSETS
        .iter()
        .find(|a| a.path == path)
        .map(|a| (a.bytes, a.mime))
}

/// Every path [`asset`] serves (for the server's route table and tests).
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str) -> &'static str {
        std::str::from_utf8(asset(path).expect(path).0).expect("utf-8")
    }

    #[test]
    fn root_is_the_page() {
        let (bytes, mime) = asset("/").unwrap();
        assert!(mime.starts_with("text/html"));
        assert_eq!(bytes, asset("/index.html").unwrap().0);
        assert!(text("/").starts_with("<!doctype html>"));
    }

    #[test]
    fn unknown_and_traversal_paths_are_not_found() {
        for p in [
            "/nope",
            "/assets/../index.html",
            "/assets/",
            "assets/app.js",
            "/index.html/",
        ] {
            assert!(asset(p).is_none(), "{p}");
        }
    }

    #[test]
    fn every_asset_the_page_names_is_served() {
        let page = text("/");
        for part in page.split(['"', '\'']) {
            if part.starts_with("/assets/") {
                assert!(asset(part).is_some(), "index.html names {part}, not served");
            }
        }
        for p in paths() {
            assert!(!asset(p).unwrap().0.is_empty(), "{p} is empty");
        }
    }

    /// The CSP forbids inline code; a page that had some would break in
    /// the browser only, so catch it here.
    #[test]
    fn page_has_no_inline_script_or_style() {
        let page = text("/").to_ascii_lowercase();
        assert!(!page.contains("<script>"), "inline <script>");
        assert!(!page.contains("<style"), "inline <style>");
        assert!(!page.contains(" style="), "style attribute");
        let handler = page.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "inline event handler (on...=)");
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "external URL"
        );
    }

    /// The terminal's xterm.js is served from the binary (no CDN), as
    /// JavaScript, with its licence, and the page loads it from there.
    #[test]
    fn vendored_xterm_is_served_with_its_licence() {
        for (p, mime) in [
            ("/assets/vendor/xterm.js", "text/javascript"),
            ("/assets/vendor/addon-fit.js", "text/javascript"),
            ("/assets/vendor/xterm.css", "text/css"),
            ("/assets/vendor/LICENSE", "text/plain"),
            ("/assets/vendor/LICENSE.addon-fit", "text/plain"),
        ] {
            let (bytes, m) = asset(p).unwrap_or_else(|| panic!("{p} not served"));
            assert!(m.starts_with(mime) && !bytes.is_empty(), "{p}: {m}");
        }
        assert!(text("/assets/vendor/LICENSE").contains("The xterm.js authors"));
        assert!(text("/assets/vendor/xterm.js").contains("e.Terminal="));
        let js = text("/assets/app.js");
        assert!(js.contains(r#"TERM_VENDOR = "/assets/vendor/""#));
        for f in ["xterm.js", "addon-fit.js", "xterm.css"] {
            assert!(
                js.contains(&format!("TERM_VENDOR + \"{f}\"")),
                "app.js does not load {f}"
            );
        }
    }

    /// API strings (labels, commands, log lines) are hostile data: the
    /// script must never parse them as HTML.
    #[test]
    fn script_never_parses_strings_as_html() {
        let js = text("/assets/app.js");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!js.contains(sink), "app.js uses {sink}");
        }
    }
}
