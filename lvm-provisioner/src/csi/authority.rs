//! Accepts any `:authority` on the unix sockets. HTTP/2 requires the
//! pseudo-header to be a URI authority, and the h2 server under tonic resets
//! every stream whose value is not one (RST_STREAM PROTOCOL_ERROR). A socket
//! path is not: grpc-go sends the dial target as authority for a
//! `passthrough:///` target with a custom dialer, so a client that dials
//! `/var/lib/kubelet/plugins/.../csi.sock` that way could never call us,
//! while kubelet's `unix://` target sends `localhost`. A unix socket has no
//! host to name, so the value means nothing here.
//!
//! Each accepted connection goes through a small relay. Frames from the
//! server pass unchanged; frames from the client pass unchanged too, except
//! header blocks (HEADERS plus CONTINUATION, RFC 9113 §6.2 and §6.10), which
//! are HPACK-decoded (RFC 7541) and encoded again with every field literal and
//! never indexed, so the server's decoder state never depends on ours, with
//! an `:authority` that is not a valid authority replaced by `localhost`.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tracing::debug;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may announce, so always allowed.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this closes the connection.
const MAX_BLOCK: usize = 1 << 20;
/// HPACK dynamic table size the server announces (h2's default).
const TABLE_SIZE: usize = 4096;
pub const FALLBACK_AUTHORITY: &[u8] = b"localhost";

type Header = (Vec<u8>, Vec<u8>);

/// Pure: replaces an `:authority` that is not a URI authority.
pub fn fix_authority(headers: &mut [Header]) -> bool {
    let mut changed = false;
    for (name, value) in headers.iter_mut() {
        if name.as_slice() == b":authority"
            && http::uri::Authority::try_from(value.as_slice()).is_err()
        {
            *value = FALLBACK_AUTHORITY.to_vec();
            changed = true;
        }
    }
    changed
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `first` holds the
/// bits above the prefix.
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Pure: a header block of "literal, never indexed, new name" fields
/// (RFC 7541 §6.2.3), plain strings, no dynamic table.
pub fn encode(headers: &[Header]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x10);
        integer(&mut out, 0, 7, name.len());
        out.extend_from_slice(name);
        integer(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Pure: one HEADERS frame and as many CONTINUATION frames as the block needs.
pub fn header_frames(stream: u32, end_stream: bool, block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 9 * (1 + block.len() / MAX_FRAME));
    let mut chunks = block.chunks(MAX_FRAME).peekable();
    let mut first = true;
    if chunks.peek().is_none() {
        let flags = FLAG_END_HEADERS | if end_stream { FLAG_END_STREAM } else { 0 };
        frame_header(&mut out, 0, FRAME_HEADERS, flags, stream);
        return out;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let mut flags = if last { FLAG_END_HEADERS } else { 0 };
        let kind = if first {
            if end_stream {
                flags |= FLAG_END_STREAM;
            }
            FRAME_HEADERS
        } else {
            FRAME_CONTINUATION
        };
        frame_header(&mut out, chunk.len(), kind, flags, stream);
        out.extend_from_slice(chunk);
        first = false;
    }
    out
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// The header block fragment of a HEADERS frame's payload.
fn fragment(payload: &[u8], flags: u8) -> io::Result<&[u8]> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & FLAG_PADDED != 0 {
        let pad = *payload
            .first()
            .ok_or_else(|| bad("padded frame without a pad length"))?;
        start = 1;
        end = end
            .checked_sub(pad as usize)
            .filter(|&e| e >= start)
            .ok_or_else(|| bad("padding longer than the frame"))?;
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    payload
        .get(start..end)
        .ok_or_else(|| bad("HEADERS frame too short"))
}

struct Pending {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

/// Relays client frames from `from` to `to`, re-encoding header blocks.
pub async fn relay(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> io::Result<()> {
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(bad("not an HTTP/2 connection preface"));
    }
    to.write_all(&preface).await?;
    let mut decoder = fluke_hpack::Decoder::new();
    decoder.set_max_allowed_table_size(TABLE_SIZE);
    let mut pending: Option<Pending> = None;
    loop {
        let mut head = [0u8; 9];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        match (kind, &mut pending) {
            (FRAME_HEADERS, None) => {
                pending = Some(Pending {
                    stream,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    block: fragment(&payload, flags)?.to_vec(),
                });
            }
            (FRAME_CONTINUATION, Some(p)) if p.stream == stream => {
                p.block.extend_from_slice(&payload);
            }
            (FRAME_HEADERS | FRAME_CONTINUATION, _) | (_, Some(_)) => {
                return Err(bad("header block interrupted"));
            }
            _ => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
                continue;
            }
        }
        if pending.as_ref().is_some_and(|p| p.block.len() > MAX_BLOCK) {
            return Err(bad("header block too large"));
        }
        if flags & FLAG_END_HEADERS == 0 {
            continue;
        }
        let Some(p) = pending.take() else {
            continue;
        };
        let mut headers: Vec<Header> = decoder
            .decode(&p.block)
            .map_err(|e| bad(&format!("HPACK: {e:?}")))?;
        if fix_authority(&mut headers) {
            debug!(
                stream = p.stream,
                "replaced an :authority that is not a URI authority"
            );
        }
        to.write_all(&header_frames(p.stream, p.end_stream, &encode(&headers)))
            .await?;
    }
    to.shutdown().await
}

/// Puts the relay between an accepted connection and the gRPC server, which
/// serves the returned end instead.
pub fn lenient<S>(conn: S) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (client_read, mut client_write) = tokio::io::split(conn);
    let (mut server_read, server_write) = tokio::io::split(theirs);
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    tokio::spawn(async move {
        if let Err(e) = relay(client_read, server_write).await {
            debug!(error = %e, "CSI connection closed");
        }
    });
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        (name.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[test]
    fn only_invalid_authorities_are_replaced() {
        let mut ok = vec![
            h(":authority", "localhost"),
            h(":path", "/csi.v1.Identity/Probe"),
        ];
        assert!(!fix_authority(&mut ok));
        for bad in [
            "/var/lib/kubelet/plugins/x/csi.sock",
            "unix:///csi.sock",
            "csi plugin",
        ] {
            let mut headers = vec![h(":method", "POST"), h(":authority", bad)];
            assert!(fix_authority(&mut headers), "{bad}");
            assert_eq!(headers[1], h(":authority", "localhost"));
        }
    }

    #[test]
    fn encoding_round_trips_through_a_decoder() {
        let headers = vec![
            h(":method", "POST"),
            h(":path", "/csi.v1.Node/NodeStageVolume"),
            h("x-long", &"v".repeat(70_000)),
        ];
        let block = encode(&headers);
        let decoded = fluke_hpack::Decoder::new().decode(&block).unwrap();
        assert_eq!(decoded, headers);
        // Split into frames of at most 16 KiB, the first one HEADERS.
        let frames = header_frames(3, true, &block);
        assert_eq!(frames[3], FRAME_HEADERS);
        assert_eq!(frames[4], FLAG_END_STREAM);
        assert_eq!(
            frames.len(),
            block.len() + 9 * block.len().div_ceil(MAX_FRAME)
        );
    }

    #[tokio::test]
    async fn relay_rewrites_a_padded_prioritised_headers_frame_and_passes_the_rest() {
        let mut client = Vec::from(&PREFACE[..]);
        // SETTINGS (empty), passed through as it is.
        frame_header(&mut client, 0, 0x4, 0, 0);
        let block = encode(&[h(":method", "POST"), h(":authority", "/tmp/csi.sock")]);
        let mut payload = vec![2u8]; // pad length
        payload.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0]);
        frame_header(
            &mut client,
            payload.len(),
            FRAME_HEADERS,
            FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
            1,
        );
        client.extend_from_slice(&payload);
        // DATA, passed through.
        frame_header(&mut client, 3, 0x0, FLAG_END_STREAM, 1);
        client.extend_from_slice(b"abc");

        let mut out = Vec::new();
        relay(&client[..], &mut out).await.unwrap();
        assert_eq!(&out[..24], PREFACE);
        assert_eq!(&out[24..33], &client[24..33], "SETTINGS unchanged");
        let headers = &out[33..];
        let len = u32::from_be_bytes([0, headers[0], headers[1], headers[2]]) as usize;
        assert_eq!((headers[3], headers[4]), (FRAME_HEADERS, FLAG_END_HEADERS));
        let decoded = fluke_hpack::Decoder::new()
            .decode(&headers[9..9 + len])
            .unwrap();
        assert_eq!(
            decoded,
            vec![h(":method", "POST"), h(":authority", "localhost")]
        );
        assert_eq!(
            &headers[9 + len..],
            &client[client.len() - 12..],
            "DATA unchanged"
        );
    }

    #[tokio::test]
    async fn a_broken_stream_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        assert!(
            relay(&b"GET / HTTP/1.1\r\n\r\n......"[..], &mut out)
                .await
                .is_err()
        );
        let mut client = Vec::from(&PREFACE[..]);
        frame_header(&mut client, 3, FRAME_HEADERS, FLAG_END_HEADERS, 1);
        client.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(relay(&client[..], &mut Vec::new()).await.is_err());
        let mut client = Vec::from(&PREFACE[..]);
        frame_header(
            &mut client,
            1,
            FRAME_HEADERS,
            FLAG_PADDED | FLAG_END_HEADERS,
            1,
        );
        client.push(9);
        assert!(relay(&client[..], &mut Vec::new()).await.is_err());
    }
}
