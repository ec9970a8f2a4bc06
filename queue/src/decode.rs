//! Turning a job's stored bytes into its arguments, and saying exactly why
//! when they cannot be.
//!
//! A payload arrives as whatever bytes a producer wrote: Herald's producers
//! write JSON, but a producer in another language, a bug or an operator's
//! hand can leave anything in the queue. Decoding happens in the backend,
//! before the job reaches apalis, so that one such job is answered on its
//! own — recorded dead with an [`UndecodablePayload`] naming the reason —
//! and never stops the fetch loop or the jobs leased beside it.

use serde::de::DeserializeOwned;

/// Deepest a job's payload may nest arrays and objects. Jobs nest a few
/// levels (an export's filter perhaps ten); the limit stays below serde_json's
/// own recursion limit (127 levels when it builds values).
pub const MAX_NESTING: usize = 64;

/// Why a job's payload cannot become its arguments. Such a job can never
/// run, however often it is retried, so it goes straight to the dead set
/// with this error.
#[derive(Debug, thiserror::Error)]
pub enum UndecodablePayload {
    /// More bytes than the queue reads (`worker.max_payload_bytes`).
    #[error(
        "payload is {bytes} bytes, over the limit of {limit} bytes (worker.max_payload_bytes)"
    )]
    TooLarge {
        /// The payload's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Zero bytes.
    #[error("payload is empty (0 bytes); a job is a JSON document")]
    Empty,
    /// Bytes that are not UTF-8, so not JSON text.
    #[error("payload is not UTF-8 text ({0}); a job is a JSON document")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// Text that is not one JSON document (syntax errors, trailing bytes).
    #[error("payload is not valid JSON ({0})")]
    NotJson(#[source] serde_json::Error),
    /// JSON nested deeper than [`MAX_NESTING`] levels.
    #[error("payload nests arrays and objects deeper than {MAX_NESTING} levels (at byte {at})")]
    TooDeep {
        /// Offset of the bracket that went one level too deep.
        at: usize,
    },
    /// Valid JSON that is not the queue's job type.
    #[error("payload is not a job of this queue ({0})")]
    WrongShape(#[source] serde_json::Error),
}

/// Decodes `bytes`, at most `limit` of them, as the JSON of an `Args`.
pub fn decode<Args: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<Args, UndecodablePayload> {
    if bytes.len() > limit {
        return Err(UndecodablePayload::TooLarge {
            bytes: bytes.len(),
            limit,
        });
    }
    if bytes.is_empty() {
        return Err(UndecodablePayload::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(UndecodablePayload::NotUtf8)?;
    // Checked for every type alike: serde_json stops at this depth when it
    // builds values, but skips deeper JSON unchecked in raw values and
    // unknown fields.
    if let Some(at) = too_deep_at(bytes) {
        return Err(UndecodablePayload::TooDeep { at });
    }
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => UndecodablePayload::WrongShape(e),
        _ => UndecodablePayload::NotJson(e),
    })
}

/// Where `json` first opens an array or object more than [`MAX_NESTING`]
/// levels deep, brackets inside strings aside; `None` if it never does.
/// Well-formedness is left to the parser.
fn too_deep_at(json: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &byte) in json.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(at);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    type Raw = Box<serde_json::value::RawValue>;

    const LIMIT: usize = 1 << 20;

    fn reason(bytes: &[u8]) -> String {
        decode::<Raw>(bytes, LIMIT).unwrap_err().to_string()
    }

    #[test]
    fn any_json_document_decodes_as_raw_arguments() {
        for ok in [&b"{\"a\": 1}"[..], b" [1, 2] ", b"null", b"42", b"\"text\""] {
            assert!(
                decode::<Raw>(ok, LIMIT).is_ok(),
                "{:?}",
                String::from_utf8_lossy(ok)
            );
        }
    }

    #[test]
    fn each_kind_of_undecodable_payload_names_its_reason() {
        assert!(reason(b"").contains("empty"));
        assert!(reason(b"not json at all").contains("not valid JSON"));
        assert!(reason(b"{\"a\": 1} trailing").contains("trailing characters"));
        assert!(reason(b"{\"a\": \"\xff\xfe\"}").contains("not UTF-8"));
        assert!(reason(b"{\"a\": ").contains("not valid JSON"));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(reason(deep.as_bytes()).contains("deeper than 64 levels (at byte 64)"));
        // Deep JSON in a field no type reads is refused all the same.
        let hidden = format!(
            "{{\"extra\": {}{}}}",
            "{\"a\":".repeat(200),
            "}".repeat(201)
        );
        assert!(reason(hidden.as_bytes()).contains("deeper than 64"));
        let big = format!("{{\"a\": \"{}\"}}", "x".repeat(LIMIT));
        assert_eq!(
            reason(big.as_bytes()),
            format!(
                "payload is {} bytes, over the limit of {LIMIT} bytes (worker.max_payload_bytes)",
                LIMIT + 9
            )
        );
    }

    #[test]
    fn valid_json_of_the_wrong_type_is_a_shape_error() {
        #[derive(Debug, serde::Deserialize)]
        struct Job {
            #[allow(dead_code)]
            id: u32,
        }
        let err = decode::<Job>(b"{\"id\": \"x\"}", LIMIT).unwrap_err();
        assert!(matches!(err, UndecodablePayload::WrongShape(_)), "{err}");
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn nesting_up_to_the_limit_decodes_and_brackets_in_strings_do_not_count() {
        let nested = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(decode::<serde_json::Value>(nested.as_bytes(), LIMIT).is_ok());
        let text = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(
            decode::<serde_json::Value>(text.as_bytes(), LIMIT).is_ok(),
            "{text}"
        );
    }
}
