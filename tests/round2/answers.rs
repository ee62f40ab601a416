//! Today's `is_success` (exact `SUCCESS` first, then any case) and the status header looked up by
//! a static name: answers whose `X-VaultAPI-Status` is repeated, mixed, misspelt or folded must
//! still be read, and a rejection in their body replayed with a new token. Over real HTTP to a
//! [`RawServer`] that writes each answer by hand.

use veeva_vault_auth::VaultAuthLayer;

use super::raw::{answer, header_values, reject_token, RawServer};
use crate::common::{authed, get, send, text, tokens_in_order, INVALID_SESSION};

const FIRST: &str = "veeva-vault-round2-answers-first";
const SECOND: &str = "veeva-vault-round2-answers-second";

/// A case: what it is, and the answer to the first token.
type Case = (&'static str, fn() -> Vec<u8>);

/// An `INVALID_SESSION_ID` body (JSON) under the given status line and header lines.
fn rejection(status: &'static str, headers: &'static [(&'static str, &'static str)]) -> Vec<u8> {
    let mut all = vec![("content-type", "application/json;charset=UTF-8")];
    all.extend_from_slice(headers);
    answer(status, &all, INVALID_SESSION)
}

/// Sends one request through a fresh layer to a server that answers the first token with
/// `rejected`: how many requests reached the server, and the answer's body.
async fn outcome(rejected: fn() -> Vec<u8>) -> (Vec<Vec<u8>>, String) {
    let server = RawServer::start("127.0.0.1:0", reject_token(FIRST, rejected)).await;
    let url = format!("http://{}", server.addr());
    let layer = VaultAuthLayer::new(
        &url,
        tokens_in_order(vec![FIRST.to_owned(), SECOND.to_owned()]),
    )
    .unwrap();
    let client = authed(&layer);
    let response = send(&client, get(&format!("{url}/api/v26.2/objects/users/me")))
        .await
        .unwrap();
    let body = text(response).await;
    (server.requests(), body)
}

fn tokens_sent(seen: &[Vec<u8>]) -> Vec<String> {
    seen.iter()
        .flat_map(|raw| header_values(raw, "authorization"))
        .collect()
}

/// Every shape of status header that is not one single `SUCCESS`: the body is read, the
/// rejection found, the request replayed once with the new token, and the caller gets the
/// replay's answer.
#[tokio::test]
async fn held_a_rejection_under_an_odd_status_header_is_never_missed() {
    let cases: &[Case] = &[
        ("SUCCESS then FAILURE", || {
            rejection(
                "200 OK",
                &[
                    ("x-vaultapi-status", "SUCCESS"),
                    ("x-vaultapi-status", "FAILURE"),
                ],
            )
        }),
        ("FAILURE then SUCCESS", || {
            rejection(
                "200 OK",
                &[
                    ("x-vaultapi-status", "FAILURE"),
                    ("x-vaultapi-status", "SUCCESS"),
                ],
            )
        }),
        ("SUCCESS twice", || {
            rejection(
                "200 OK",
                &[
                    ("x-vaultapi-status", "SUCCESS"),
                    ("X-VaultAPI-Status", "SUCCESS"),
                ],
            )
        }),
        ("SUCCESS twice, apart", || {
            rejection(
                "200 OK",
                &[
                    ("x-vaultapi-status", "SUCCESS"),
                    ("set-cookie", "a=1"),
                    ("x-vaultapi-status", "SUCCESS"),
                ],
            )
        }),
        ("one line SUCCESS, FAILURE", || {
            rejection("200 OK", &[("x-vaultapi-status", "SUCCESS, FAILURE")])
        }),
        ("SUCCESSFUL", || {
            rejection("200 OK", &[("x-vaultapi-status", "SUCCESSFUL")])
        }),
        ("SUCCES", || {
            rejection("200 OK", &[("x-vaultapi-status", "SUCCES")])
        }),
        ("S U C C E S S", || {
            rejection("200 OK", &[("x-vaultapi-status", "S U C C E S S")])
        }),
        ("FAILURE among repeated cookies", || {
            rejection(
                "200 OK",
                &[
                    ("set-cookie", "a=1"),
                    ("set-cookie", "b=2"),
                    ("x-vaultapi-status", "FAILURE"),
                ],
            )
        }),
        ("no status header", || rejection("200 OK", &[])),
        ("401 under SUCCESS", || {
            rejection("401 Unauthorized", &[("x-vaultapi-status", "SUCCESS")])
        }),
    ];
    for (what, rejected) in cases {
        let (seen, body) = outcome(*rejected).await;
        assert_eq!(
            tokens_sent(&seen),
            [format!("Bearer {FIRST}"), format!("Bearer {SECOND}")],
            "{what}: replayed once, with the new token"
        );
        assert!(body.contains("\"SUCCESS\""), "{what}: {body}");
    }
}

/// One `SUCCESS` in any case (as documented), with other headers repeated or not, is passed on
/// unread: one request, the first answer. `SUCCESS ` with a trailing space arrives trimmed (HTTP
/// drops a field's trailing whitespace) and is the same.
#[tokio::test]
async fn held_a_single_success_in_any_case_is_passed_unread() {
    let cases: &[Case] = &[
        ("SUCCESS among repeated cookies", || {
            rejection(
                "200 OK",
                &[
                    ("set-cookie", "a=1"),
                    ("x-vaultapi-status", "SUCCESS"),
                    ("set-cookie", "b=2"),
                ],
            )
        }),
        ("success", || {
            rejection("200 OK", &[("x-vaultapi-status", "success")])
        }),
        ("SuCcEsS", || {
            rejection("200 OK", &[("x-vaultapi-status", "SuCcEsS")])
        }),
        ("SUCCESS with a trailing space", || {
            rejection("200 OK", &[("x-vaultapi-status", "SUCCESS ")])
        }),
    ];
    for (what, answer) in cases {
        let (seen, body) = outcome(*answer).await;
        assert_eq!(
            tokens_sent(&seen),
            [format!("Bearer {FIRST}")],
            "{what}: not replayed"
        );
        assert_eq!(body, INVALID_SESSION, "{what}: the first answer, whole");
    }
}
