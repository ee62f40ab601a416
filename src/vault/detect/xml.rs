//! Vault's XML answers (to `Accept: application/xml`), read with a streaming XML reader.
//!
//! ```xml
//! <VaultResponse>
//!   <responseStatus>FAILURE</responseStatus>
//!   <errors><error><type>INVALID_SESSION_ID</type><message>…</message></error></errors>
//! </VaultResponse>
//! ```
//!
//! Element names are matched without their namespace prefix; the root's name is not checked.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::INVALID_SESSION_ID;

/// Whether a whole XML body is well formed and has an `errors/*/type` of `INVALID_SESSION_ID`
/// under its root: the `type` of an item of `errors`, whatever the item element is called (Vault
/// names list items after the list, as `<vaultIds><vault>`; for errors, `<error>`).
pub(crate) fn lists_invalid_session(body: &[u8]) -> bool {
    let mut found = false;
    let complete = walk(body, |path, text| {
        if matches!(path, [b"errors", _item, b"type"]) && text == INVALID_SESSION_ID.as_bytes() {
            found = true;
        }
    });
    complete && found
}

/// The text of `responseStatus` when it is the root's first child and the prefix shows it in
/// full (up to its end tag). `None` otherwise: then the body has to be read on.
pub(crate) fn leading_status(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut status = None;
    walk_first(prefix, |name, text| {
        if name == b"responseStatus" {
            status = Some(text.to_vec());
        }
    });
    status
}

/// Calls `leaf(path, text)` for every element with text only (the path from below the root, the
/// text trimmed, entities and character references resolved). Returns whether the document
/// ended well formed.
fn walk(body: &[u8], mut leaf: impl FnMut(&[&[u8]], &[u8])) -> bool {
    let mut reader = Reader::from_reader(body);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text: Option<Vec<u8>> = None;
    let mut roots = 0;
    loop {
        let Ok(event) = reader.read_event() else {
            return false;
        };
        match event {
            Event::Start(start) => {
                if path.is_empty() {
                    roots += 1;
                }
                path.push(start.local_name().as_ref().to_vec());
                text = Some(Vec::new());
            }
            Event::End(_) => {
                if let Some(text) = text.take() {
                    let below_root: Vec<&[u8]> = path.iter().skip(1).map(Vec::as_slice).collect();
                    leaf(&below_root, text.trim_ascii());
                }
                path.pop();
            }
            Event::Empty(_) => {
                if path.is_empty() {
                    roots += 1;
                }
                text = None;
            }
            Event::Text(chunk) => append(&mut text, &chunk),
            Event::CData(chunk) => append(&mut text, &chunk),
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => predefined(&reference),
                    Err(_) => None,
                };
                match resolved {
                    Some(c) => {
                        let mut utf8 = [0; 4];
                        append(&mut text, c.encode_utf8(&mut utf8).as_bytes());
                    }
                    // An entity from a DTD: the text cannot be known.
                    None => text = None,
                }
            }
            Event::Eof => return path.is_empty() && roots == 1,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Like [`walk`], over a prefix, but only up to the end of the root's first child, which it
/// hands to `leaf(name, text)` if it holds text only.
fn walk_first(prefix: &[u8], mut leaf: impl FnMut(&[u8], &[u8])) {
    let mut reader = Reader::from_reader(prefix);
    let mut depth = 0usize;
    let mut name: Option<Vec<u8>> = None;
    let mut text = Some(Vec::new());
    loop {
        let Ok(event) = reader.read_event() else {
            return;
        };
        match event {
            Event::Start(start) => {
                depth += 1;
                match depth {
                    1 => {}
                    2 => name = Some(start.local_name().as_ref().to_vec()),
                    // The first child has children of its own: not the status.
                    _ => return,
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    if let (Some(name), Some(text)) = (name.as_deref(), text.as_deref()) {
                        leaf(name, text.trim_ascii());
                    }
                }
                return;
            }
            Event::Empty(_) => return,
            Event::Text(chunk) if depth == 2 => append(&mut text, &chunk),
            Event::CData(chunk) if depth == 2 => append(&mut text, &chunk),
            Event::GeneralRef(_) if depth == 2 => text = None,
            Event::Text(chunk) if depth == 1 && chunk.trim_ascii().is_empty() => {}
            Event::Eof => return,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                if depth != 0 {
                    return;
                }
            }
        }
    }
}

fn append(text: &mut Option<Vec<u8>>, chunk: &[u8]) {
    if let Some(text) = text {
        text.extend_from_slice(chunk);
    }
}

fn predefined(name: &[u8]) -> Option<char> {
    Some(match name {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"quot" => '"',
        b"apos" => '\'',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REJECTION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<VaultResponse>
  <responseStatus>FAILURE</responseStatus>
  <errors>
    <error>
      <type>INVALID_SESSION_ID</type>
      <message>Invalid or expired session ID.</message>
    </error>
  </errors>
</VaultResponse>"#;

    #[test]
    fn vaults_xml_rejection_is_recognised() {
        assert!(lists_invalid_session(REJECTION.as_bytes()));
        let spelled = REJECTION.replace("INVALID_SESSION_ID", "<![CDATA[INVALID_]]>SESSION&#95;ID");
        assert!(lists_invalid_session(spelled.as_bytes()));
        let namespaced = "<v:VaultResponse xmlns:v=\"urn:x\"><v:errors><v:error>\
            <v:type>INVALID_SESSION_ID</v:type></v:error></v:errors></v:VaultResponse>";
        assert!(lists_invalid_session(namespaced.as_bytes()));
        let other_item = "<VaultResponse><errors><item><type>INVALID_SESSION_ID</type></item>\
            </errors></VaultResponse>";
        assert!(lists_invalid_session(other_item.as_bytes()));
    }

    #[test]
    fn other_errors_and_other_places_are_not() {
        for body in [
            REJECTION.replace("INVALID_SESSION_ID", "INSUFFICIENT_ACCESS"),
            REJECTION
                .replace("<type>", "<kind>")
                .replace("</type>", "</kind>"),
            // Mentioned in the message only.
            REJECTION
                .replace("<type>INVALID_SESSION_ID", "<type>OTHER")
                .replace("Invalid or expired session ID.", "INVALID_SESSION_ID"),
            // Not the type of an item of errors.
            "<r><errors><type>INVALID_SESSION_ID</type></errors></r>".to_owned(),
            "<r><errors><e><x><type>INVALID_SESSION_ID</type></x></e></errors></r>".to_owned(),
            "<r><type>INVALID_SESSION_ID</type></r>".to_owned(),
            // Cut off: not well formed.
            REJECTION[..REJECTION.len() - 10].to_owned(),
            // Two roots.
            format!("{}<x/>", REJECTION.trim_start_matches(|c| c != '<')),
            "<!-- <errors><error><type>INVALID_SESSION_ID</type></error></errors> --><r/>"
                .to_owned(),
        ] {
            assert!(!lists_invalid_session(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn the_leading_status_is_read_from_the_first_bytes() {
        let end = REJECTION.find("</responseStatus>").unwrap() + "</responseStatus>".len();
        for cut in 0..REJECTION.len() {
            let seen = leading_status(&REJECTION.as_bytes()[..cut]);
            if cut < end {
                assert_eq!(seen, None, "{cut}");
            } else {
                assert_eq!(seen.as_deref(), Some(&b"FAILURE"[..]), "{cut}");
            }
        }
        assert_eq!(
            leading_status(b"<r><data><responseStatus>SUCCESS</responseStatus></data></r>"),
            None
        );
        assert_eq!(
            leading_status(b"<r><x/><responseStatus>SUCCESS</responseStatus></r>"),
            None
        );
    }
}
