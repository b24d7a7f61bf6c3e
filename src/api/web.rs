//! The browser pages, compiled into the binary. The page files are built
//! on the `web` branch; until they land, `/` serves a placeholder that says
//! so. Their interface: [`asset`] maps a request path to its bytes and
//! media type.

/// The bytes and media type of the asset at `path` (`/` is the page).
pub fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
    match path {
        "/" | "/index.html" => Some((PLACEHOLDER.as_bytes(), "text/html; charset=utf-8")),
        _ => None,
    }
}

const PLACEHOLDER: &str = "<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\">\
<title>refine-proc</title>\n<h1>refine-proc</h1>\n<p>The Processes and System pages are \
not built into this binary yet. The API is at <a href=\"/api/v1/openapi.json\">\
/api/v1/openapi.json</a>.</p>\n";
