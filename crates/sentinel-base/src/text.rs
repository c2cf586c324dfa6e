//! Text helpers shared by the crates that must print exactly what Go programs print
//! (promtool's test output, Alertmanager's group keys and matchers, Prometheus's alert
//! templates): Go's quoting, its float formatting ([`format_float`] and friends, the one
//! float formatter of the workspace) and its `fmt.Sprintf` subset ([`sprintf`]), plus the
//! redaction of secrets in URLs.

mod float;
mod gofmt;

pub use float::{format_exposition, format_float, format_trimmed, go_g, MAX_FMT_WIDTH};
pub use gofmt::{sprintf, FmtArg};

/// Go's `strconv.Quote` for the characters label values contain in practice.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Query parameter names whose values are secrets (compared case-insensitively; a name
/// that ends in one of [`SECRET_PARAM_SUFFIXES`] counts too, e.g. `auth_token`).
pub const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "password",
    "sig",
    "signature",
];

/// Name endings that make a query parameter a secret (`x-api-key`, `client_secret`).
pub const SECRET_PARAM_SUFFIXES: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "api_key",
    "api-key",
    "signature",
];

fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PARAMS.contains(&n.as_str()) || SECRET_PARAM_SUFFIXES.iter().any(|s| n.ends_with(s))
}

/// Characters that end a URL embedded in free text (log lines, JSON, quoted Debug output).
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '`' | '\\' | '|' | '^' | '{' | '}'
        )
}

/// One URL's secrets redacted: the password of `user:password@` and the values of
/// token-like query parameters (see [`SECRET_PARAMS`]). Anything that is not a URL is
/// returned unchanged. Same as [`redact_secrets_in`] on a single URL.
pub fn redact_url(url: &str) -> String {
    redact_secrets_in(url).into_owned()
}

/// Redacts every URL secret inside free text: for each `scheme://` found, the password
/// in its userinfo (`user:SECRET@` → `user:<redacted>@`) and the values of token-like
/// query parameters (`?token=SECRET` → `?token=<redacted>`). Idempotent; linear in the
/// text's length; borrows when nothing needed redacting.
pub fn redact_secrets_in(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find(ends_url).unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        let red = redact_one(url);
        changed |= red != url;
        out.push_str(&red);
        rest = tail;
    }
    out.push_str(rest);
    if changed {
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `url` is what follows `scheme://`, up to the end of the URL.
fn redact_one(url: &str) -> String {
    let auth_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, path) = url.split_at(auth_end);
    let mut out = String::with_capacity(url.len());
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) if colon + 1 < userinfo.len() => {
                    out.push_str(&userinfo[..=colon]);
                    out.push_str(REDACTED);
                }
                _ => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (before_frag, frag) = match path.find('#') {
        Some(h) => path.split_at(h),
        None => (path, ""),
    };
    match before_frag.split_once('?') {
        Some((p, query)) => {
            out.push_str(p);
            out.push('?');
            for (n, pair) in query.split('&').enumerate() {
                if n > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, value)) if is_secret_param(name) && !value.is_empty() => {
                        out.push_str(name);
                        out.push('=');
                        out.push_str(REDACTED);
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        None => out.push_str(before_frag),
    }
    out.push_str(frag);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_userinfo_password_is_redacted() {
        assert_eq!(
            redact_url("http://user:SECRET@alertmanager:9093/api"),
            "http://user:<redacted>@alertmanager:9093/api"
        );
        // A password holding '@' (unencoded) is still cut at the last '@'.
        assert_eq!(redact_url("https://u:p@ss@h/"), "https://u:<redacted>@h/");
        // A user without a password, and URLs without userinfo, stay as they are.
        assert_eq!(redact_url("http://user@h:1/x"), "http://user@h:1/x");
        assert_eq!(redact_url("http://h:1/x?a=b"), "http://h:1/x?a=b");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn token_like_query_parameters_are_redacted() {
        assert_eq!(
            redact_url("https://h/hook?Token=abc&x=1&API_KEY=k&sig=s#frag"),
            "https://h/hook?Token=<redacted>&x=1&API_KEY=<redacted>&sig=<redacted>#frag"
        );
        assert_eq!(
            redact_url("https://h/?auth_token=t&x-api-key=k&keyboard=1"),
            "https://h/?auth_token=<redacted>&x-api-key=<redacted>&keyboard=1"
        );
    }

    /// Random text from URL-significant characters: never panics, always idempotent,
    /// and a `:SECRET@` right after `://user` never survives.
    #[test]
    fn random_text_redaction_never_panics_and_is_idempotent() {
        let alphabet: Vec<char> = ":/@?&=#%\" <>é日tokensigp".chars().collect();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..3000 {
            let len = (x % 80) as usize;
            let noise: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let once = redact_secrets_in(&noise).into_owned();
            assert_eq!(redact_secrets_in(&once), once, "{noise:?}");
            let text = format!("{noise} http://user:SECRET@h/ {noise}");
            let red = redact_secrets_in(&text);
            assert!(
                red.contains("http://user:<redacted>@h/"),
                "{text:?} → {red:?}"
            );
        }
    }

    #[test]
    fn secrets_in_free_text_are_redacted_and_redaction_is_idempotent() {
        let text = r#"error sending request for url (http://u:SECRET@127.0.0.1:9/x?token=T2): refused; {"url":"https://a:B@h"}"#;
        let once = redact_secrets_in(text).into_owned();
        assert!(
            !once.contains("SECRET") && !once.contains("T2") && !once.contains(":B@"),
            "{once}"
        );
        assert!(
            once.contains("http://u:<redacted>@127.0.0.1:9/x?token=<redacted>"),
            "{once}"
        );
        assert_eq!(redact_secrets_in(&once), once);
        assert!(matches!(
            redact_secrets_in("nothing here"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
