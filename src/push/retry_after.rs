//! Reading a provider's `Retry-After` header.
//!
//! RFC 9110 allows a number of seconds or an HTTP date. A date in the past
//! means "now" (zero); a value that is neither is ignored, and the job's
//! own backoff applies.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The wait `headers` ask for, read at `now`.
pub fn parse(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, value.parse().unwrap());
        headers
    }

    #[test]
    fn seconds_are_read() {
        let now = SystemTime::now();
        assert_eq!(parse(&headers("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(parse(&headers(" 0 "), now), Some(Duration::ZERO));
    }

    #[test]
    fn a_date_is_the_time_until_it_and_a_past_date_is_zero() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 03:00:00 GMT").unwrap();
        assert_eq!(
            parse(&headers("Tue, 01 Dec 2026 03:00:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse(&headers("Tue, 01 Dec 2026 02:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn anything_else_is_ignored() {
        let now = SystemTime::now();
        assert_eq!(parse(&headers("soon"), now), None);
        assert_eq!(parse(&headers("-5"), now), None);
        assert_eq!(parse(&HeaderMap::new(), now), None);
    }
}
