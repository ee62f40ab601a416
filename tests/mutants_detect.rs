//! Tests that kill mutants of the rejection detection (`src/vault/detect.rs` and
//! `src/vault/detect/`) that the rest of the suite let live (scripts/mutants.sh). The rules are
//! pure functions of the status, the headers and the bytes, so these call them directly.

use http::{HeaderMap, HeaderValue, StatusCode};
use veeva_vault_auth::detect::{FailureRule, Verdict};

/// A rule that reads every body but judges none itself: `check_body` is the trait's default.
#[derive(Clone, Debug)]
struct ReadsEverything;

impl FailureRule for ReadsEverything {
    fn check_head(&self, _: StatusCode, _: &HeaderMap) -> Verdict {
        Verdict::InspectBody
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(*name, HeaderValue::from_static(value));
    }
    headers
}

#[test]
fn the_default_check_body_finds_no_failure() {
    let json = headers(&[("content-type", "application/json")]);
    let rejection = br#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID"}]}"#;
    for body in [&b""[..], b"{}", rejection] {
        assert!(!ReadsEverything.check_body(StatusCode::OK, &json, body));
        assert!(!ReadsEverything.check_body(StatusCode::UNAUTHORIZED, &json, body));
    }
}

#[test]
fn a_bare_suffix_is_no_structured_syntax_subtype() {
    use veeva_vault_auth::detect::VaultRule;
    // A subtype starts with a letter or digit (RFC 6838): `+json` alone names no JSON type.
    for content_type in ["application/+json", "application/+xml", "text/+xml"] {
        let answer = headers(&[
            ("content-type", content_type),
            ("x-vaultapi-status", "FAILURE"),
        ]);
        assert_eq!(
            VaultRule.check_head(StatusCode::OK, &answer),
            Verdict::Pass,
            "{content_type}"
        );
    }
    for content_type in [
        "application/problem+json",
        "application/vnd.x+xml",
        "text/a+xml",
    ] {
        let answer = headers(&[
            ("content-type", content_type),
            ("x-vaultapi-status", "FAILURE"),
        ]);
        assert_eq!(
            VaultRule.check_head(StatusCode::OK, &answer),
            Verdict::InspectBody,
            "{content_type}"
        );
    }
}

#[test]
fn the_xml_check_finds_exactly_an_invalid_session_error() {
    use veeva_vault_auth::detect::has_invalid_session_error_xml;
    let rejection = b"<VaultResponse><responseStatus>FAILURE</responseStatus><errors><error>\
        <type>INVALID_SESSION_ID</type></error></errors></VaultResponse>";
    assert!(has_invalid_session_error_xml(rejection));
    let other = b"<VaultResponse><responseStatus>FAILURE</responseStatus><errors><error>\
        <type>INSUFFICIENT_ACCESS</type></error></errors></VaultResponse>";
    assert!(!has_invalid_session_error_xml(other));
    assert!(!has_invalid_session_error_xml(b""));
}

/// `content` as raw deflate (RFC 1951) in one stored block whose first byte is `0x08`: the
/// low nibble of a zlib header's method byte, though the two bytes fail zlib's check value.
/// (The bits after a stored block's header are padding, which a reader ignores.)
fn raw_deflate_starting_0x08(content: &[u8]) -> Vec<u8> {
    let len = u16::try_from(content.len()).unwrap();
    let mut out = vec![0x08];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(content);
    // The final block: stored and empty.
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    out
}

#[test]
fn raw_deflate_is_told_from_zlib_by_both_header_checks() {
    use veeva_vault_auth::detect::{judge_body, VaultRule};
    let rejection = br#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID"}]}"#;
    let body = raw_deflate_starting_0x08(rejection);
    assert_eq!(body[0] & 0x0f, 8, "a zlib method nibble");
    assert_ne!(
        (u16::from(body[0]) << 8 | u16::from(body[1])) % 31,
        0,
        "but no zlib check value"
    );
    let answer = headers(&[
        ("content-type", "application/json"),
        ("content-encoding", "deflate"),
    ]);
    let verdict = judge_body(&VaultRule, StatusCode::OK, &answer, &body, true, 64 * 1024);
    assert_eq!(verdict, Verdict::AuthFailure);
}

#[test]
fn an_xml_body_with_several_roots_is_not_well_formed_whatever_they_are() {
    use veeva_vault_auth::detect::has_invalid_session_error_xml;
    let root = "<VaultResponse><responseStatus>FAILURE</responseStatus><errors><error>\
        <type>INVALID_SESSION_ID</type></error></errors></VaultResponse>";
    assert!(has_invalid_session_error_xml(root.as_bytes()));
    // Empty roots count as roots as much as the others do.
    for body in [
        format!("<x/>{root}"),
        format!("{root}<x/>"),
        format!("<x/>{root}<y></y>"),
        format!("<y></y>{root}<x/>"),
        format!("<x/><x/>{root}<y></y><y></y><y></y>"),
    ] {
        assert!(!has_invalid_session_error_xml(body.as_bytes()), "{body}");
    }
}

/// What [`VaultRule`] makes of the first bytes of an XML answer.
fn xml_prefix_verdict(prefix: &str) -> Verdict {
    use veeva_vault_auth::detect::VaultRule;
    let xml = headers(&[("content-type", "application/xml;charset=UTF-8")]);
    VaultRule.check_prefix(StatusCode::OK, &xml, prefix.as_bytes())
}

#[test]
fn an_xml_status_is_read_from_text_and_cdata_in_the_first_child_only() {
    let status = "<responseStatus>SUCCESS</responseStatus>";
    assert_eq!(
        xml_prefix_verdict(&format!("<VaultResponse>{status}")),
        Verdict::Pass
    );
    assert_eq!(
        xml_prefix_verdict("<VaultResponse><responseStatus><![CDATA[SUCCESS]]></responseStatus>"),
        Verdict::Pass,
        "CDATA is text"
    );
    assert_eq!(
        xml_prefix_verdict(
            "<VaultResponse>\n  <responseStatus> SUC<![CDATA[CESS]]> </responseStatus>"
        ),
        Verdict::Pass
    );
    // Text, a CDATA section or a reference in the root before its first child: not the shape of
    // Vault's answers, so the rest must be read.
    for before in ["junk", "<![CDATA[ ]]>", "<![CDATA[x]]>", "&amp;", "&#32;"] {
        let prefix = format!("<VaultResponse>{before}{status}");
        assert_eq!(
            xml_prefix_verdict(&prefix),
            Verdict::InspectBody,
            "{prefix}"
        );
    }
    // A reference in the status: its text is not taken on trust.
    assert_eq!(
        xml_prefix_verdict("<VaultResponse><responseStatus>SUCC&#69;SS</responseStatus>"),
        Verdict::InspectBody
    );
}

#[test]
fn what_stands_outside_the_root_does_not_hide_the_status() {
    // Text or a reference before the root is outside the document: the whole-body check ignores
    // it, and so does the check of the first bytes.
    use veeva_vault_auth::detect::has_invalid_session_error_xml;
    for before in ["junk", "&amp;", "&#65;", " \n"] {
        let prefix = format!("{before}<VaultResponse><responseStatus>SUCCESS</responseStatus>");
        assert_eq!(xml_prefix_verdict(&prefix), Verdict::Pass, "{prefix}");
        let rejection = format!(
            "{before}<VaultResponse><responseStatus>FAILURE</responseStatus><errors><error>\
             <type>INVALID_SESSION_ID</type></error></errors></VaultResponse>"
        );
        assert!(
            has_invalid_session_error_xml(rejection.as_bytes()),
            "{rejection}"
        );
    }
}
