//! [`LineView`]: what `verify` needs from a line, parsed by the same rules
//! as an [`crate::AuditEvent`] without building one.
//!
//! Verifying a 10-million-event log spent most of its time allocating: each
//! line became an `AuditEvent` with a dozen `String`s, a claims map and a
//! `detail` tree, only to look at four fields. `LineView` borrows those four
//! (`event`, `prev`, `hash`, `sig`) from the line, and checks every other
//! field's *type* with zero-sized stand-ins ([`Text`], [`AnyJson`],
//! [`AnyMap`]) that accept exactly what the real field type accepts. So a
//! line is "not a valid audit event" for `verify` exactly when
//! `serde_json::from_slice::<AuditEvent>` would refuse it, with the same
//! error message; the `same_verdict_as_audit_event` test holds the two
//! together, and a new `AuditEvent` field must be mirrored here (an
//! unmirrored field would be ignored like any unknown field, never
//! rejected).

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// The mirror types carry the real types' names because serde puts the
/// type name into its error messages ("expected struct AuditEvent with 22
/// elements"), which `verify` reports.
mod mirror {
    use super::{AnyJson, AnyMap, Text};
    use serde::Deserialize;
    use std::borrow::Cow;

    /// The fields of an [`crate::AuditEvent`] line, in its order. Only the ones
    /// `verify` reads are kept; the others are type-checked and dropped.
    // The type-checked-only fields are never read: that is the point.
    #[allow(dead_code)]
    #[derive(Deserialize)]
    pub(crate) struct AuditEvent<'a> {
        pub seq: u64,
        time: Text,
        #[serde(default)]
        request_id: Option<Text>,
        #[serde(borrow)]
        pub event: Cow<'a, str>,
        outcome: Text,
        #[serde(default)]
        identity: Option<AuditIdentity>,
        #[serde(default)]
        action: Option<Text>,
        #[serde(default)]
        role: Option<Text>,
        #[serde(default)]
        decision: Option<AuditDecision>,
        #[serde(default)]
        ttl_seconds: Option<u64>,
        #[serde(default)]
        scopes: Option<Vec<Text>>,
        #[serde(default)]
        audience: Option<Text>,
        #[serde(default)]
        fingerprint: Option<Text>,
        #[serde(default)]
        lease_id: Option<Text>,
        #[serde(default)]
        token_id: Option<Text>,
        #[serde(default)]
        source_ip: Option<Text>,
        #[serde(default)]
        error: Option<AuditErrorInfo>,
        #[serde(default)]
        detail: Option<AnyJson>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(borrow)]
        pub prev: Cow<'a, str>,
        #[serde(borrow)]
        pub hash: Cow<'a, str>,
        #[serde(default, borrow)]
        pub sig: Option<Cow<'a, str>>,
    }

    /// Mirrors [`crate::AuditIdentity`].
    #[derive(Deserialize)]
    #[allow(dead_code)]
    pub(super) struct AuditIdentity {
        subject: Text,
        issuer: Text,
        method: Text,
        auth: Text,
        kind: Text,
        #[serde(default)]
        claims_used: AnyMap,
        proof_id: Text,
    }

    /// Mirrors [`crate::AuditDecision`].
    #[derive(Deserialize)]
    #[allow(dead_code)]
    pub(super) struct AuditDecision {
        allowed: bool,
        #[serde(default)]
        policy_ids: Vec<Text>,
        bundle_version: u64,
        #[serde(default)]
        errors: Vec<Text>,
    }

    /// Mirrors [`crate::AuditErrorInfo`].
    #[derive(Deserialize)]
    #[allow(dead_code)]
    pub(super) struct AuditErrorInfo {
        code: Text,
        message: Text,
    }
}

/// What `verify` reads of a line; see the module docs.
pub(crate) use mirror::AuditEvent as LineView;

/// Accepts what `String` accepts, keeps nothing.
#[derive(Default)]
struct Text;

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `String`'s own wording, so error messages match.
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Text, E> {
                Ok(Text)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Text, E> {
                std::str::from_utf8(v)
                    .map(|_| Text)
                    .map_err(|_| E::invalid_value(de::Unexpected::Bytes(v), &self))
            }
        }
        d.deserialize_string(V)
    }
}

/// Accepts what `serde_json::Value` accepts, keeps nothing.
struct AnyJson;

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyJsonVisitor)
    }
}

struct AnyJsonVisitor;

impl<'de> Visitor<'de> for AnyJsonVisitor {
    type Value = AnyJson;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Value`'s own wording.
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_none<E: de::Error>(self) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<AnyJson, D::Error> {
        AnyJson::deserialize(d)
    }
    fn visit_unit<E: de::Error>(self) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyJson, A::Error> {
        while seq.next_element::<AnyJson>()?.is_some() {}
        Ok(AnyJson)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyJson, A::Error> {
        while map.next_entry::<Text, AnyJson>()?.is_some() {}
        Ok(AnyJson)
    }
}

/// Accepts what `serde_json::Map<String, Value>` accepts, keeps nothing.
#[derive(Default)]
struct AnyMap;

impl<'de> Deserialize<'de> for AnyMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `Map`'s own wording.
                f.write_str("a map")
            }
            fn visit_unit<E: de::Error>(self) -> Result<AnyMap, E> {
                Ok(AnyMap)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyMap, A::Error> {
                while map.next_entry::<Text, AnyJson>()?.is_some() {}
                Ok(AnyMap)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::LineView;
    use crate::AuditEvent;

    /// A full event as the server writes it, every optional field present.
    const FULL: &str = r#"{"seq":7,"time":"2026-01-01T00:00:00.000Z","request_id":"req_1","event":"credential_issued","outcome":"success","identity":{"subject":"repo:o/r:ref:refs/heads/main","issuer":"https://token.actions.githubusercontent.com","method":"oidc","auth":"gha","kind":"ci","claims_used":{"repository":"o/r","ref":"refs/heads/main","run":12,"ok":true,"n":null,"list":[1,"a",{"x":1.5e3}]},"proof_id":"p"},"action":"creds","role":"deploy","decision":{"allowed":true,"policy_ids":["p1","p2"],"bundle_version":3,"errors":[]},"ttl_seconds":900,"scopes":["a","b"],"audience":"aud","fingerprint":"fp_x","lease_id":"lse_1","token_id":"tok_1","source_ip":"127.0.0.1","error":{"code":"c","message":"m"},"detail":{"session_token_id":"tok_2","nested":{"a":[true,false,null,-1,2.5]}},"schema_version":1,"prev":"00","hash":"ab","sig":"cd"}"#;

    /// `(from, to)` edits of [`FULL`], each making one field valid or
    /// invalid in some way a hand-edited or damaged line could.
    const EDITS: &[(&str, &str)] = &[
        (r#""seq":7"#, r#""seq":-7"#),
        (r#""seq":7"#, r#""seq":7.5"#),
        (r#""seq":7"#, r#""seq":"7""#),
        (r#""seq":7,"#, ""),
        (r#""seq":7"#, r#""seq":18446744073709551616"#),
        (r#""time":"2026-01-01T00:00:00.000Z""#, r#""time":null"#),
        (r#""time":"2026-01-01T00:00:00.000Z""#, r#""time":5"#),
        (r#""request_id":"req_1""#, r#""request_id":null"#),
        (r#""request_id":"req_1""#, r#""request_id":1"#),
        (r#""request_id":"req_1""#, r#""request_id":"r\u00e9q\n""#),
        (
            r#""event":"credential_issued""#,
            r#""event":"cred\"ential""#,
        ),
        (r#""event":"credential_issued""#, r#""event":["x"]"#),
        (r#""outcome":"success","#, ""),
        (r#""identity":{"#, r#""identity":null,"x":{"#),
        (r#""subject":"repo:o/r:ref:refs/heads/main","#, ""),
        (r#""kind":"ci""#, r#""kind":1"#),
        (r#""claims_used":{"#, r#""claims_used":null,"y":{"#),
        (r#""claims_used":{"#, r#""claims_used":[],"y":{"#),
        (r#""run":12"#, r#""run":1e400"#),
        (r#""run":12"#, r#""run":-1e400"#),
        (r#""run":12"#, r#""run":123456789012345678901234567890"#),
        (r#""run":12"#, r#""run":01"#),
        (
            r#""repository":"o/r""#,
            r#""repository":"o\/r\ud83d\ude00""#,
        ),
        (r#""repository":"o/r""#, r#""repository":"\ud800""#),
        (r#""repository":"o/r""#, r#""repository":"\x""#),
        (
            r#""repository":"o/r""#,
            r#""repository":"o/r","repository":"dup""#,
        ),
        (r#""allowed":true"#, r#""allowed":"true""#),
        (r#""policy_ids":["p1","p2"]"#, r#""policy_ids":["p1",2]"#),
        (r#""policy_ids":["p1","p2"]"#, r#""policy_ids":null"#),
        (r#""bundle_version":3,"#, ""),
        (r#""errors":[]"#, r#""errors":[null]"#),
        (r#""ttl_seconds":900"#, r#""ttl_seconds":-1"#),
        (r#""ttl_seconds":900"#, r#""ttl_seconds":null"#),
        (r#""scopes":["a","b"]"#, r#""scopes":"a""#),
        (r#""scopes":["a","b"]"#, r#""scopes":[]"#),
        (r#""code":"c""#, r#""code":{}"#),
        (r#""detail":{"#, r#""detail":null,"z":{"#),
        (r#""detail":{"#, r#""detail":7,"z":{"#),
        (r#""nested":{"#, r#""nested":{"d":1e400,"#),
        (r#""schema_version":1"#, r#""schema_version":4294967296"#),
        (r#""schema_version":1"#, r#""schema_version":"1""#),
        (r#""prev":"00""#, r#""prev":null"#),
        (r#""prev":"00","#, ""),
        (r#""hash":"ab""#, r#""hash":"a\u0062""#),
        (r#""sig":"cd""#, r#""sig":null"#),
        (r#""sig":"cd""#, r#""sig":1"#),
        (r#""seq":7,"#, r#""seq":7,"seq":8,"#),
        (r#""hash":"ab""#, r#""hash":"ab","hash":"ab""#),
        (r#""seq":7,"#, r#""seq":7,"unknown":{"deep":[1e400]},"#),
        (r#""seq":7,"#, r#""seq":7,"unknown":{"#),
        (r#"{"seq""#, r#"[{"seq""#),
        (r#""sig":"cd"}"#, r#""sig":"cd"} "#),
        (r#""sig":"cd"}"#, r#""sig":"cd"}x"#),
        (r#""sig":"cd"}"#, r#""sig":"cd""#),
    ];

    fn verdict_of_event(line: &str) -> Result<(), String> {
        serde_json::from_str::<AuditEvent>(line)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn verdict_of_view(line: &str) -> Result<(), String> {
        serde_json::from_str::<LineView<'_>>(line)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn same_verdict_as_audit_event() {
        assert!(verdict_of_event(FULL).is_ok());
        let mut rejected = 0;
        for (from, to) in EDITS {
            assert!(FULL.contains(from), "edit {from:?} does not apply");
            let line = FULL.replacen(from, to, 1);
            let expected = verdict_of_event(&line);
            assert_eq!(verdict_of_view(&line), expected, "line: {line}");
            rejected += usize::from(expected.is_err());
        }
        // The corpus exercises both sides.
        assert!(rejected > 30, "only {rejected} edits are rejected");
        for line in [
            "",
            "{}",
            "null",
            "[]",
            "{\"seq\":1}",
            "\u{feff}{}",
            "{\"a\":",
        ] {
            assert_eq!(
                verdict_of_view(line),
                verdict_of_event(line),
                "line: {line:?}"
            );
        }
    }

    #[test]
    fn keeps_the_fields_verify_reads() {
        let view: LineView<'_> = serde_json::from_str(FULL).unwrap();
        assert_eq!(view.seq, 7);
        assert_eq!(view.event, "credential_issued");
        assert_eq!(view.prev, "00");
        assert_eq!(view.hash, "ab");
        assert_eq!(view.sig.as_deref(), Some("cd"));
        let escaped = FULL.replacen(r#""hash":"ab""#, r#""hash":"a\u0062""#, 1);
        let view: LineView<'_> = serde_json::from_str(&escaped).unwrap();
        assert_eq!(view.hash, "ab", "escapes are decoded like String does");
    }
}
