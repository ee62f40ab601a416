//! Undoing a response's `Content-Encoding` for judging, within a bound.
//!
//! Only the bytes the inspection read are decoded, and never more than a bound comes out: a
//! small body that inflates to gigabytes (a decompression bomb) costs at most the bound. What the
//! caller receives is never touched: this works on a copy.

use std::io::Read;

use http::header::CONTENT_ENCODING;
use http::HeaderMap;

/// A response's content coding, as far as judging it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    /// No coding (or only `identity`): the body is the content.
    Identity,
    /// `gzip` (or `x-gzip`).
    Gzip,
    /// `deflate`: zlib-wrapped as HTTP says, or raw deflate as some servers send it.
    Deflate,
    /// `br`.
    Brotli,
    /// A coding this crate cannot undo (`zstd`, `compress`, several codings stacked, a value
    /// that is not text): the content cannot be judged.
    Unsupported,
}

impl Coding {
    /// The coding `headers` declare.
    pub(crate) fn of(headers: &HeaderMap) -> Coding {
        let mut found = Coding::Identity;
        for value in headers.get_all(CONTENT_ENCODING) {
            let Ok(value) = value.to_str() else {
                return Coding::Unsupported;
            };
            for name in value.split(',').map(str::trim) {
                let coding = if name.is_empty() || name.eq_ignore_ascii_case("identity") {
                    continue;
                } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                    Coding::Gzip
                } else if name.eq_ignore_ascii_case("deflate") {
                    Coding::Deflate
                } else if name.eq_ignore_ascii_case("br") {
                    Coding::Brotli
                } else {
                    return Coding::Unsupported;
                };
                if found != Coding::Identity {
                    // Stacked codings: rare enough not to undo.
                    return Coding::Unsupported;
                }
                found = coding;
            }
        }
        found
    }
}

/// What decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// The content decoded from the input, at most the bound.
    pub(crate) content: Vec<u8>,
    /// Whether that is the whole content of the input: the coded stream ended, without error,
    /// within the bound. (Whether the input was the whole body is the caller's knowledge.)
    pub(crate) whole: bool,
}

/// Decodes `input` (the first bytes of a body coded with `coding`, or all of them) into at most
/// `max` bytes. Never panics, whatever the input: a corrupt or cut-off stream gives what came out
/// before the fault. `Identity` and `Unsupported` give nothing; callers use the input itself.
pub(crate) fn decode(coding: Coding, input: &[u8], max: usize) -> Decoded {
    match coding {
        Coding::Identity | Coding::Unsupported => Decoded {
            content: Vec::new(),
            whole: false,
        },
        Coding::Gzip => read_bounded(flate2::bufread::MultiGzDecoder::new(input), max),
        Coding::Deflate if looks_like_zlib(input) => {
            read_bounded(flate2::bufread::ZlibDecoder::new(input), max)
        }
        Coding::Deflate => read_bounded(flate2::bufread::DeflateDecoder::new(input), max),
        Coding::Brotli => read_bounded(
            brotli_decompressor::Decompressor::new(input, BROTLI_BUFFER),
            max,
        ),
    }
}

/// The brotli reader's input buffer: the inspected bodies are small.
const BROTLI_BUFFER: usize = 4096;

/// A zlib header: compression method 8 and a check value divisible by 31 (RFC 1950).
fn looks_like_zlib(input: &[u8]) -> bool {
    match input {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        // Too short to tell, and too short to give any content either way.
        _ => true,
    }
}

fn read_bounded(reader: impl Read, max: usize) -> Decoded {
    let mut content = Vec::new();
    // One byte past the bound tells a stream that fits from one that does not.
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let ended = reader.take(limit).read_to_end(&mut content).is_ok();
    let whole = ended && content.len() <= max;
    content.truncate(max);
    Decoded { content, whole }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(values: &[&str]) -> HeaderMap {
        values
            .iter()
            .map(|v| (CONTENT_ENCODING, v.parse().unwrap()))
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn the_declared_coding_is_read_like_a_server_does() {
        assert_eq!(Coding::of(&HeaderMap::new()), Coding::Identity);
        assert_eq!(Coding::of(&headers(&["identity"])), Coding::Identity);
        assert_eq!(Coding::of(&headers(&["GZIP"])), Coding::Gzip);
        assert_eq!(Coding::of(&headers(&["x-gzip"])), Coding::Gzip);
        assert_eq!(Coding::of(&headers(&[" br "])), Coding::Brotli);
        assert_eq!(Coding::of(&headers(&["deflate"])), Coding::Deflate);
        assert_eq!(Coding::of(&headers(&["identity, gzip"])), Coding::Gzip);
        assert_eq!(Coding::of(&headers(&["zstd"])), Coding::Unsupported);
        assert_eq!(Coding::of(&headers(&["gzip, br"])), Coding::Unsupported);
        assert_eq!(Coding::of(&headers(&["gzip", "gzip"])), Coding::Unsupported);
    }

    #[test]
    fn gzip_decodes_whole_and_cut_off() {
        let body = gzip(b"{\"responseStatus\":\"FAILURE\"}");
        let whole = decode(Coding::Gzip, &body, 1024);
        assert_eq!(&whole.content[..], b"{\"responseStatus\":\"FAILURE\"}");
        assert!(whole.whole);
        let cut = decode(Coding::Gzip, &body[..body.len() - 4], 1024);
        assert!(!cut.whole, "a stream without its trailer is not whole");
    }

    #[test]
    fn a_bomb_gives_at_most_the_bound() {
        let body = gzip(&vec![b'a'; 10 << 20]);
        assert!(body.len() < 20_000);
        let decoded = decode(Coding::Gzip, &body, 4096);
        assert_eq!(decoded.content.len(), 4096);
        assert!(!decoded.whole);
    }

    #[test]
    fn deflate_comes_zlib_wrapped_or_raw() {
        let data = b"{\"responseStatus\":\"SUCCESS\"}";
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(data).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(data).unwrap();
        let raw = raw.finish().unwrap();
        for body in [zlib, raw] {
            let decoded = decode(Coding::Deflate, &body, 1024);
            assert_eq!(&decoded.content[..], data);
            assert!(decoded.whole);
        }
    }

    #[test]
    fn brotli_decodes() {
        let data = b"{\"responseStatus\":\"FAILURE\",\"errors\":[]}";
        let mut body = Vec::new();
        {
            let mut writer = brotli::CompressorWriter::new(&mut body, 4096, 5, 22);
            writer.write_all(data).unwrap();
        }
        let decoded = decode(Coding::Brotli, &body, 1024);
        assert_eq!(&decoded.content[..], data);
        assert!(decoded.whole);
        let cut = decode(Coding::Brotli, &body[..body.len() / 2], 1024);
        assert!(!cut.whole);
        assert!(data.starts_with(&cut.content));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli] {
                let decoded = decode(coding, &bytes, 64);
                assert!(decoded.content.len() <= 64);
            }
        }
    }
}
