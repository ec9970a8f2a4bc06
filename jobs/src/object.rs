//! Job payloads are JSON objects, and only objects.
//!
//! serde's derived `Deserialize` for a struct also accepts a JSON array of
//! its fields in declaration order (`["65a1…", "5f0c…", "title", …]`): a
//! shape no producer means to send, whose meaning changes silently when a
//! field is added or reordered. [`object_only!`] gives a struct a
//! `Deserialize` that accepts a JSON object and refuses everything else
//! with an error naming what arrived, while keeping every `#[serde(...)]`
//! attribute of the derive.
//!
//! How: the struct derives with `#[serde(remote = "Self")]`, which makes
//! serde generate the derived code as the inherent functions
//! `Type::serialize` and `Type::deserialize` instead of trait impls. The
//! macro then implements the traits: `Serialize` calls the inherent
//! function as is; `Deserialize` asks the format for a map (JSON: an
//! object) and hands its entries to the inherent function.

/// Implements `Serialize` and an objects-only `Deserialize` for a struct
/// that derives both with `#[serde(remote = "Self")]`; `$expecting`
/// completes "invalid type: ..., expected `$expecting`". With `deserialize`
/// first, for a struct that derives only `Deserialize`, it implements only
/// that.
#[macro_export]
macro_rules! object_only {
    ($type:ty, $expecting:literal) => {
        impl ::serde::Serialize for $type {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // The inherent function serde derived (remote = "Self").
                <$type>::serialize(self, serializer)
            }
        }

        $crate::object_only!(deserialize $type, $expecting);
    };
    (deserialize $type:ty, $expecting:literal) => {
        impl<'de> ::serde::Deserialize<'de> for $type {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                struct ObjectVisitor;

                impl<'de> ::serde::de::Visitor<'de> for ObjectVisitor {
                    type Value = $type;

                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_map<A: ::serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$type, A::Error> {
                        // The inherent function serde derived (remote = "Self").
                        <$type>::deserialize(::serde::de::value::MapAccessDeserializer::new(map))
                    }
                }

                deserializer.deserialize_map(ObjectVisitor)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(remote = "Self", rename_all = "camelCase")]
    struct Pair {
        first_name: String,
        #[serde(default)]
        count: u32,
    }
    crate::object_only!(Pair, "a pair object");

    #[test]
    fn an_object_decodes_with_the_derives_attributes() {
        let pair: Pair = serde_json::from_str(r#"{"firstName": "a"}"#).unwrap();
        assert_eq!(
            pair,
            Pair {
                first_name: "a".into(),
                count: 0
            }
        );
        assert_eq!(
            serde_json::to_string(&pair).unwrap(),
            r#"{"firstName":"a","count":0}"#
        );
    }

    #[test]
    fn anything_but_an_object_is_refused_naming_what_came() {
        for (json, what) in [
            (r#"["a", 1]"#, "sequence"),
            ("null", "null"),
            ("42", "integer"),
            (r#""text""#, "string"),
        ] {
            let err = serde_json::from_str::<Pair>(json).unwrap_err().to_string();
            assert!(err.contains(what), "{json}: {err}");
            assert!(err.contains("expected a pair object"), "{json}: {err}");
        }
    }

    #[test]
    fn a_missing_field_is_still_named() {
        let err = serde_json::from_str::<Pair>("{}").unwrap_err().to_string();
        assert!(err.contains("missing field `firstName`"), "{err}");
    }
}
