//! Credentials out of connection URLs before they reach a log line or an
//! error message. Every process shows the Redis and MongoDB URLs it uses
//! (the producer's errors, Herald's start-up errors, `herald doctor`), and
//! all of them go through [`redact_url`].

/// The URL with its password replaced by `***` (the user name is kept, as
/// it helps tell connections apart); a URL without one is returned as is.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{}{}{}", &url[..scheme_end + 3], shown, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_url("redis://user:s3cret@cache:6379/0"),
            "redis://user:***@cache:6379/0"
        );
        assert_eq!(redact_url("redis://:s3cret@cache"), "redis://:***@cache");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
