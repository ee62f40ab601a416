//! The rules and the judgement of bytes, without HTTP.

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect()
}

#[test]
fn success_header_is_never_read() {
    let h = headers(&[
        ("content-type", "application/json"),
        ("x-vaultapi-status", "SUCCESS"),
    ]);
    assert_eq!(VaultRule.check_head(StatusCode::OK, &h), Verdict::Pass);
}

#[test]
fn non_json_is_never_read() {
    let h = headers(&[("content-type", "application/pdf")]);
    assert_eq!(VaultRule.check_head(StatusCode::OK, &h), Verdict::Pass);
    assert_eq!(
        VaultRule.check_head(StatusCode::OK, &HeaderMap::new()),
        Verdict::Pass
    );
}

#[test]
fn json_without_status_header_is_read() {
    let h = headers(&[("content-type", "application/problem+json")]);
    assert_eq!(
        VaultRule.check_head(StatusCode::OK, &h),
        Verdict::InspectBody
    );
    let h = headers(&[("content-type", "Application/JSON; charset=utf-8")]);
    assert_eq!(
        VaultRule.check_head(StatusCode::OK, &h),
        Verdict::InspectBody
    );
}

#[test]
fn unauthorized_is_a_failure_without_reading() {
    assert_eq!(
        VaultRule.check_head(StatusCode::UNAUTHORIZED, &HeaderMap::new()),
        Verdict::AuthFailure
    );
    assert_eq!(
        UnauthorizedOnly.check_head(StatusCode::OK, &HeaderMap::new()),
        Verdict::Pass
    );
}

#[test]
fn only_invalid_session_id_counts() {
    let body = |t: &str| {
        format!(r#"{{"responseStatus":"FAILURE","errors":[{{"type":"{t}","message":"x"}}]}}"#)
    };
    assert!(has_invalid_session_error(
        body("INVALID_SESSION_ID").as_bytes()
    ));
    for other in [
        "INSUFFICIENT_ACCESS",
        "API_LIMIT_EXCEEDED",
        "INACTIVE_USER",
        "USERNAME_OR_PASSWORD_INCORRECT",
        "invalid_session_id",
    ] {
        assert!(
            !has_invalid_session_error(body(other).as_bytes()),
            "{other}"
        );
    }
    let two =
        r#"{"responseStatus":"FAILURE","errors":[{"type":"OTHER"},{"type":"INVALID_SESSION_ID"}]}"#;
    assert!(has_invalid_session_error(two.as_bytes()));
    assert!(!has_invalid_session_error(b"not json"));
    assert!(!has_invalid_session_error(
        br#"{"errors":"INVALID_SESSION_ID"}"#
    ));
    assert!(!has_invalid_session_error(
        br#"{"message":"INVALID_SESSION_ID"}"#
    ));
}

fn appended(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(HeaderName::try_from(*k).unwrap(), v.parse().unwrap());
    }
    map
}

#[test]
fn a_repeated_status_header_is_read() {
    let json = ("content-type", "application/json");
    for statuses in [
        ["SUCCESS", "FAILURE"],
        ["FAILURE", "SUCCESS"],
        ["SUCCESS", "SUCCESS"],
    ] {
        let h = appended(&[
            json,
            ("x-vaultapi-status", statuses[0]),
            ("x-vaultapi-status", statuses[1]),
        ]);
        assert_eq!(
            VaultRule.check_head(StatusCode::OK, &h),
            Verdict::InspectBody,
            "{statuses:?}"
        );
    }
    // Another header repeated: the single SUCCESS still passes.
    let h = appended(&[
        json,
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("x-vaultapi-status", "SUCCESS"),
    ]);
    assert_eq!(VaultRule.check_head(StatusCode::OK, &h), Verdict::Pass);
}

#[test]
fn xml_is_read_and_judged_as_xml() {
    for content_type in [
        "application/xml;charset=UTF-8",
        "text/xml",
        "application/atom+XML",
    ] {
        let h = headers(&[
            ("content-type", content_type),
            ("x-vaultapi-status", "FAILURE"),
        ]);
        assert_eq!(
            VaultRule.check_head(StatusCode::OK, &h),
            Verdict::InspectBody,
            "{content_type}"
        );
    }
    let h = headers(&[("content-type", "application/xml")]);
    let body = b"<VaultResponse><responseStatus>FAILURE</responseStatus><errors><error>\
        <type>INVALID_SESSION_ID</type></error></errors></VaultResponse>";
    assert!(VaultRule.check_body(StatusCode::OK, &h, body));
    // The same bytes declared as JSON are not JSON.
    let as_json = headers(&[("content-type", "application/json")]);
    assert!(!VaultRule.check_body(StatusCode::OK, &as_json, body));
    assert_eq!(
        VaultRule.check_prefix(
            StatusCode::OK,
            &h,
            b"<VaultResponse><responseStatus>SUCCESS</"
        ),
        Verdict::InspectBody
    );
    assert_eq!(
        VaultRule.check_prefix(
            StatusCode::OK,
            &h,
            b"<?xml version=\"1.0\"?><VaultResponse><responseStatus>WARNING</responseStatus><da"
        ),
        Verdict::Pass
    );
}

#[test]
fn an_unknown_coding_is_never_read() {
    let h = headers(&[
        ("content-type", "application/json"),
        ("content-encoding", "zstd"),
    ]);
    assert_eq!(VaultRule.check_head(StatusCode::OK, &h), Verdict::Pass);
    assert_eq!(
        judge_body(&VaultRule, StatusCode::OK, &h, b"{}", true, 1024),
        Verdict::Pass
    );
}

#[test]
fn judge_body_decodes_then_asks_the_rule() {
    use std::io::Write;
    let body = br#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID"}]}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body).unwrap();
    let gz = gz.finish().unwrap();
    let h = headers(&[
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ]);
    assert_eq!(
        judge_body(&VaultRule, StatusCode::OK, &h, &gz, true, 1024),
        Verdict::AuthFailure
    );
    // Decoded beyond the bound: only a prefix, which does not decide.
    assert_eq!(
        judge_body(&VaultRule, StatusCode::OK, &h, &gz, true, 40),
        Verdict::InspectBody
    );
    // Cut off: a prefix.
    assert_eq!(
        judge_body(
            &VaultRule,
            StatusCode::OK,
            &h,
            &gz[..gz.len() - 8],
            false,
            1024
        ),
        Verdict::InspectBody
    );
    // Not marked complete: a prefix, whatever the bytes.
    let plain = headers(&[("content-type", "application/json")]);
    assert_eq!(
        judge_body(&VaultRule, StatusCode::OK, &plain, body, false, 1024),
        Verdict::InspectBody
    );
    assert_eq!(
        judge_body(&VaultRule, StatusCode::OK, &plain, body, true, 1024),
        Verdict::AuthFailure
    );
}

/// The judgement over arbitrary bytes, codings and content types: never a panic, and a whole
/// body always gets a verdict or "undecided" only where its content did not decode whole.
#[test]
fn judging_arbitrary_bytes_never_panics() {
    let mut seed = 0x9e37_79b9_u32;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let shapes: [&[u8]; 6] = [
        br#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID"}]}"#,
        br#"{"responseStatus":"SUCCESS"}"#,
        b"<r><responseStatus>FAILURE</responseStatus><errors><error><type>INVALID_SESSION_ID",
        b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY e \"x\">]><r>&e;&#x110000;&#0;</r>",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
        b"\x0b\x02\x80",
    ];
    for round in 0..3000 {
        let shape = shapes[round % shapes.len()];
        let mut bytes = shape.to_vec();
        for _ in 0..(next() % 4) {
            if !bytes.is_empty() {
                let at = next() as usize % bytes.len();
                bytes[at] = next() as u8;
            }
        }
        bytes.truncate(next() as usize % (bytes.len() + 1));
        let content_type =
            ["application/json", "text/xml", "application/soap+xml"][next() as usize % 3];
        let coding = ["identity", "gzip", "deflate", "br"][next() as usize % 4];
        let h = headers(&[("content-type", content_type), ("content-encoding", coding)]);
        let complete = next() % 2 == 0;
        let verdict = judge_body(&VaultRule, StatusCode::OK, &h, &bytes, complete, 256);
        if complete && coding == "identity" {
            assert_ne!(verdict, Verdict::InspectBody, "{bytes:?}");
        }
    }
}
