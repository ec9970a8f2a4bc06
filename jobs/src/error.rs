//! Validation errors for job payloads.

use std::fmt;

/// A job payload was rejected. `field` is the JSON path of the offending value
/// (for example `sender.id`), so the message can be shown to whoever wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job field `{field}`: {reason}")]
pub struct ValidationError {
    /// JSON path of the field, in the payload's own (camelCase) names.
    pub field: &'static str,
    /// What is wrong with it, in words a producer can act on.
    pub reason: String,
}

impl ValidationError {
    /// Builds an error for `field` with a human-readable `reason`.
    pub fn new(field: &'static str, reason: impl fmt::Display) -> Self {
        Self {
            field,
            reason: reason.to_string(),
        }
    }
}

/// The value of `result`, or `None` with its error added to `errors`: how a
/// validation collects every wrong field in one pass.
pub(crate) fn keep<T>(
    errors: &mut Vec<ValidationError>,
    result: Result<T, ValidationError>,
) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}
