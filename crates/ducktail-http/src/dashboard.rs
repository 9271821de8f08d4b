//! The web dashboard: three files embedded in the binary (`dashboard/`), served at `/` and
//! `/assets/…`, and the login that lets a browser hold `http.token` in a cookie.
//!
//! The page is a client of the JSON API and computes no figure the API gives. It works offline:
//! nothing is fetched from another origin, which the Content-Security-Policy also enforces (no
//! inline script or style, no other origin). Every response carries an ETag of its content, so
//! browsers revalidate and get `304 Not Modified` until the binary changes.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{get, post, web, HttpRequest, HttpResponse};

use crate::auth::{same_secret, TOKEN_COOKIE};
use crate::wire::{ApiError, LoginRequest};
use crate::HttpState;

/// What the browser may load and run: only this origin, no inline code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Asset {
        // SipHash with fixed keys: the same content gives the same tag in every process of a
        // build, and a changed file a new one.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        Asset { body, content_type, etag: format!("\"{:016x}\"", hasher.finish()) }
    }

    fn respond(&self, request: &HttpRequest) -> HttpResponse {
        let not_modified = crate::revalidation::not_modified(request.headers().get(header::IF_NONE_MATCH), &self.etag);
        let mut response = if not_modified { HttpResponse::NotModified() } else { HttpResponse::Ok() };
        response
            .insert_header((header::ETAG, self.etag.clone()))
            // Revalidate every time: a 304 costs a round trip on loopback, and a new binary's
            // page is never mixed with an old script.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"));
        if not_modified {
            return response.finish();
        }
        response.content_type(self.content_type).body(self.body)
    }
}

/// The page and its two assets, hashed once.
fn assets() -> &'static [(&'static str, Asset); 3] {
    static ASSETS: OnceLock<[(&'static str, Asset); 3]> = OnceLock::new();
    ASSETS.get_or_init(|| {
        [
            ("index.html", Asset::new(include_str!("dashboard/index.html"), "text/html; charset=utf-8")),
            ("app.js", Asset::new(include_str!("dashboard/app.js"), "text/javascript; charset=utf-8")),
            ("app.css", Asset::new(include_str!("dashboard/app.css"), "text/css; charset=utf-8")),
        ]
    })
}

fn asset(name: &str) -> Option<&'static Asset> {
    assets().iter().find(|(file, _)| *file == name).map(|(_, asset)| asset)
}

/// The routes that need no token: the page and its assets hold no data, and the login is how a
/// browser presents the token.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/" || path == "/api/login" || path.strip_prefix("/assets/").is_some_and(|name| asset(name).is_some())
}

#[get("/")]
pub(crate) async fn index(request: HttpRequest) -> HttpResponse {
    asset("index.html").map_or_else(|| HttpResponse::NotFound().finish(), |page| page.respond(&request))
}

#[get("/assets/{name}")]
pub(crate) async fn static_asset(request: HttpRequest, name: web::Path<String>) -> HttpResponse {
    match asset(&name) {
        Some(found) if name.as_str() != "index.html" => found.respond(&request),
        _ => HttpResponse::NotFound().json(serde_json::json!({ "error": format!("no asset {name}") })),
    }
}

/// `POST /api/login {"token": …}`: sets the token cookie when the token is right. The cookie is
/// `HttpOnly` (scripts cannot read it) and `SameSite=Strict` (other sites' pages cannot send
/// it); it is not `Secure` because the daemon serves plain HTTP on loopback.
#[post("/api/login")]
pub(crate) async fn login(state: web::Data<HttpState>, body: web::Json<LoginRequest>) -> Result<HttpResponse, ApiError> {
    let expected = &state.settings.token;
    if expected.is_empty() {
        return Ok(HttpResponse::NoContent().finish());
    }
    if !same_secret(&body.token, expected) {
        return Err(ApiError::unauthorized("wrong token: use the value of http.token in the daemon's configuration"));
    }
    let cookie = format!("{TOKEN_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", body.token);
    let cookie = HeaderValue::from_str(&cookie).map_err(|_| ApiError::bad_request("the token must be printable ASCII without spaces or ';'"))?;
    Ok(HttpResponse::NoContent().insert_header((header::SET_COOKIE, cookie)).insert_header((header::CACHE_CONTROL, "no-store")).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_its_own_assets_and_no_inline_code() {
        let page = include_str!("dashboard/index.html");
        assert!(page.contains("/assets/app.js") && page.contains("/assets/app.css"), "the page loads its two assets");
        assert!(!page.contains("<script>") && !page.contains(" style=") && !page.contains(" onclick="), "no inline code: the CSP forbids it");
        for (name, file) in assets() {
            // XML namespace names (SVG's) are identifiers, not addresses anything loads.
            let body = file.body.replace("http://www.w3.org/", "");
            assert!(!body.contains("http://") && !body.contains("https://"), "{name} names another origin");
        }
    }

    #[test]
    fn public_paths_are_the_page_its_assets_and_the_login() {
        assert!(is_public("/") && is_public("/assets/app.js") && is_public("/api/login"));
        assert!(!is_public("/assets/secret") && !is_public("/api/stats") && !is_public("/metrics"));
    }
}
