//! A secret shown once, across a redirect: the page that creates a secret answers its
//! POST with a redirect to a page that shows it (POST-redirect-GET), so a reload never
//! submits the form again. The secret travels in a short-lived cookie, encrypted with
//! the master key and bound to the session and the page it is for, and the showing page
//! clears it: a reload (or a second tab, or another node) finds nothing to show.
//! Stateless, so it works whichever node answers the GET.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

use super::auth::Console;
use crate::app::AppState;

const COOKIE: &str = "kh_once";
/// How long the redirect may take.
const MAX_AGE_S: i64 = 300;

fn context(c: &Console, page: &str) -> String {
    let session = keyhaven_core::key_format::digest_hex(&c.token);
    format!("console-once:{page}:{session}")
}

fn cookie(state: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    crate::auth::extract::set_cookie(state, COOKIE, value, "Strict", Some(max_age))
}

/// A redirect to `page` carrying `secret` for it (a plain redirect, should encryption
/// fail: the page then says the secret can't be shown again).
pub fn redirect_with(state: &AppState, c: &Console, page: &str, secret: &str) -> Response {
    let mut res = super::layout::see_other(page);
    let expires = c.now.timestamp() + MAX_AGE_S;
    let plain = format!("{expires}\n{secret}");
    match state
        .config
        .master_key
        .encrypt(plain.as_bytes(), &context(c, page))
    {
        Ok(sealed) => {
            if let Some(v) = cookie(state, &sealed, MAX_AGE_S) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        Err(_) => tracing::warn!("cannot seal a secret for the page that shows it"),
    }
    res
}

/// The secret waiting for `page` in this session, if any (and not expired).
pub fn take(state: &AppState, c: &Console, headers: &HeaderMap, page: &str) -> Option<String> {
    let sealed = crate::auth::extract::cookie_in(headers, COOKIE)?;
    let plain = state.config.master_key.decrypt(sealed, &context(c, page))?;
    let text = String::from_utf8(plain).ok()?;
    let (expires, secret) = text.split_once('\n')?;
    let expires: i64 = expires.parse().ok()?;
    (expires >= c.now.timestamp()).then(|| secret.to_string())
}

/// Clears the cookie on `res` (the secret was shown, or could not be).
pub fn clear(state: &AppState, res: &mut Response) {
    if let Some(v) = cookie(state, "", 0) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}
