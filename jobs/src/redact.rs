//! Credentials out of connection URLs before they reach a log line or an
//! error message. Every process shows the Redis and MongoDB URLs it uses
//! (the producer's errors, Herald's start-up errors, `herald doctor`), and
//! all of them go through [`redact_url`].
//!
//! A URL carries secrets in two places: the password of its user
//! information (`redis://user:PASSWORD@host`), and query parameters such
//! as MongoDB's `tlsCertificateKeyFilePassword` or a proxy's `token`. Both
//! are replaced by `***`; the rest (user name, hosts, other options) is
//! kept, as it helps tell connections apart.

/// Words that mark a query parameter as a secret, in any case, anywhere in
/// its name (`password`, `authPassword`, `access_token`, `secretKey`, ...).
const SECRET_WORDS: [&str; 5] = ["password", "secret", "token", "key", "credential"];

/// Whether the query parameter `name` holds a secret.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

/// The URL with its password and secret query parameters replaced by
/// `***`; a URL without any is returned as is.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = redact_userinfo(base);
    if let Some(query) = query {
        let (query, fragment) = match query.split_once('#') {
            Some((query, fragment)) => (query, Some(fragment)),
            None => (query, None),
        };
        let parameters: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&parameters.join("&"));
        if let Some(fragment) = fragment {
            shown.push('#');
            shown.push_str(fragment);
        }
    }
    shown
}

/// `base` (a URL without its query) with the password of its user
/// information hidden.
fn redact_userinfo(base: &str) -> String {
    let Some(scheme_end) = base.find("://") else {
        return base.to_owned();
    };
    let rest = &base[scheme_end + 3..];
    // The authority ends at the first `/`; several hosts (a cluster or a
    // replica set) are all in it.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return base.to_owned();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let shown = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        user.to_owned()
    };
    format!("{}{}{}", &base[..scheme_end + 3], shown, &rest[at..])
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
        assert_eq!(
            redact_url("mongodb://app:p%40ss@h1:27017,h2:27017/herald?replicaSet=rs0"),
            "mongodb://app:***@h1:27017,h2:27017/herald?replicaSet=rs0"
        );
    }

    #[test]
    fn secrets_in_the_query_are_hidden_too() {
        assert_eq!(
            redact_url(
                "mongodb://h/db?tls=true&tlsCertificateKeyFilePassword=s3cret&authSource=admin"
            ),
            "mongodb://h/db?tls=true&tlsCertificateKeyFilePassword=***&authSource=admin"
        );
        assert_eq!(
            redact_url("redis+sentinel://s1,s2/mymaster?sentinelPassword=x&db=2"),
            "redis+sentinel://s1,s2/mymaster?sentinelPassword=***&db=2"
        );
        for (url, secret) in [
            ("https://h/p?access_token=abc", "abc"),
            ("https://h/p?Secret=abc#frag", "abc"),
            ("https://h/p?apiKey=abc&x=1", "abc"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} -> {shown}");
        }
    }

    #[test]
    fn an_at_sign_in_the_query_is_not_taken_for_user_information() {
        assert_eq!(
            redact_url("mongodb://h:27017/db?appName=a@b"),
            "mongodb://h:27017/db?appName=a@b"
        );
        assert_eq!(
            redact_url("mongodb://u:pw@h:27017/db?appName=a@b"),
            "mongodb://u:***@h:27017/db?appName=a@b"
        );
    }
}
