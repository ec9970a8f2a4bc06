//! [`TraceParent`]: the W3C Trace Context `traceparent` a job carries, so
//! that the worker's spans continue the trace of the request (or the
//! producer's code) that enqueued it.
//!
//! A `traceparent` is `00-<trace id>-<parent id>-<flags>`: version `00`,
//! 32 lowercase hex digits naming the whole trace, 16 naming the span the
//! next one is a child of, and two of flags (`01`: sampled). An id of only
//! zeros is invalid. Anything else is refused by [`TraceParent::parse`],
//! and a job whose `traceparent` does not parse starts a trace of its own:
//! tracing is never a reason to refuse work.
//!
//! Herald writes ids from the thread's random generator and passes the
//! flags on as they came (`01` for a trace it starts); an exporter that
//! samples reads them ([`TraceParent::flags`]).

use std::fmt;

use rand::Rng;

/// A W3C `traceparent`: a trace id, the span the next span is a child of,
/// and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// A `traceparent` that is not of the W3C form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, ids not all zero)")]
pub struct BadTraceParent;

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut bytes = [0u8; N];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TraceParent {
    /// `text` as a `traceparent`, version `00` only.
    pub fn parse(text: &str) -> Result<Self, BadTraceParent> {
        let mut parts = text.split('-');
        let (Some("00"), Some(trace), Some(parent), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(BadTraceParent);
        };
        let trace_id = hex_bytes::<16>(trace).ok_or(BadTraceParent)?;
        let parent_id = hex_bytes::<8>(parent).ok_or(BadTraceParent)?;
        let [flags] = hex_bytes::<1>(flags).ok_or(BadTraceParent)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(BadTraceParent);
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// A new trace, sampled; its [`Self::span_id`] is its first span's.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        let mut trace_id = [0u8; 16];
        rng.fill_bytes(&mut trace_id);
        trace_id[0] |= 1; // never all zeros
        Self {
            trace_id,
            parent_id: Self::span_id_bytes(),
            flags: 1,
        }
    }

    /// A new span of this trace, a child of the span this one names; its
    /// `traceparent` names the new span, the parent of what follows.
    pub fn child(&self) -> Self {
        Self {
            parent_id: Self::span_id_bytes(),
            ..*self
        }
    }

    /// A new span: a child of the span `text` names, or the first span of
    /// a new trace when `text` is absent or not of the W3C form. Its
    /// [`Self::span_id`] is the new span's.
    pub fn child_of(text: Option<&str>) -> Self {
        text.and_then(|t| Self::parse(t).ok())
            .map_or_else(Self::new_root, |parent| parent.child())
    }

    /// The trace id, 32 hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id this `traceparent` names (the parent of what follows),
    /// 16 hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.parent_id)
    }

    /// The trace flags, as they came (`01`: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    fn span_id_bytes() -> [u8; 8] {
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        id[7] |= 1; // never all zeros
        id
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_a_child_keeps_the_trace() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceParent::parse(text).expect("the W3C example");
        assert_eq!(parent.to_string(), text);
        assert_eq!(parent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert_eq!(TraceParent::parse(&child.to_string()), Ok(child));
        let root = TraceParent::new_root();
        assert_eq!(TraceParent::parse(&root.to_string()), Ok(root));
    }

    #[test]
    fn anything_else_is_refused_and_starts_a_trace_of_its_own() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), Err(BadTraceParent), "{bad:?}");
        }
        let started = TraceParent::child_of(Some("garbage"));
        assert_eq!(started.trace_id().len(), 32);
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let continued = TraceParent::child_of(Some(text));
        assert_eq!(continued.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(continued.span_id(), "00f067aa0ba902b7");
    }
}
