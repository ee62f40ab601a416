//! Unit tests of [`Inspection`](super::Inspection): the bounds, the looks at a prefix, and the
//! body handed back.

use super::*;
use crate::vault::detect::VaultRule;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::io::Write;

/// A body from a script: data frames, empty frames, then (if `stall`) never another frame.
struct Script {
    frames: VecDeque<Bytes>,
    stall: bool,
    polled: usize,
}

impl Script {
    fn new(frames: impl IntoIterator<Item = Bytes>, stall: bool) -> Self {
        Self {
            frames: frames.into_iter().collect(),
            stall,
            polled: 0,
        }
    }
}

impl Body for Script {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polled += 1;
        match self.frames.pop_front() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None if self.stall => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

fn json_response<B>(body: B) -> http::Response<B> {
    http::Response::builder()
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

/// What a frame takes in memory, counted here on its own (not with the code under test).
const FRAME: usize = std::mem::size_of::<Frame<Bytes>>();

const REJECTION: &[u8] = br#"{"responseStatus":"FAILURE","errors":[{"type":"INVALID_SESSION_ID","message":"Invalid or expired session ID."}]}"#;

fn start<B: Body>(response: http::Response<B>, limit: usize) -> Inspection<B> {
    match Inspection::start(response, limit, DEFAULT_INSPECT_WAIT) {
        Started::Reading(inspection) => inspection,
        Started::TooLarge(_) => panic!("not read"),
    }
}

fn judge_now<B: Body>(
    inspection: &mut Inspection<B>,
) -> Option<(http::Response<ResponseBody<B>>, bool)> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match inspection.poll_judge(&mut cx, &VaultRule) {
        Poll::Ready(judged) => judged,
        Poll::Pending => panic!("waits"),
    }
}

#[tokio::test]
async fn one_byte_frames_hold_no_more_than_the_bound() {
    let limit = 64 * 1024;
    let body = Script::new((0..200_000).map(|_| Bytes::from_static(b" ")), true);
    let mut inspection = start(json_response(body), limit);
    let (response, rejected) = judge_now(&mut inspection).unwrap();
    assert!(!rejected);
    // Stopped at the bound, not after 64 Ki frames.
    assert!(inspection.frames.is_empty());
    let frames = response.body().read_ahead().unwrap();
    assert!(frames * (FRAME + 1) <= limit + FRAME + 1);
    assert!(frames > limit / (2 * (FRAME + 1)), "{frames}");
    let rest = response.into_body().frame().await.unwrap().unwrap();
    assert_eq!(rest.into_data().unwrap(), " ");
}

#[test]
fn empty_frames_count_against_the_bound() {
    let limit = 64 * 1024;
    let body = Script::new((0..1_000_000).map(|_| Bytes::new()), false);
    let mut inspection = start(json_response(body), limit);
    let (response, rejected) = judge_now(&mut inspection).unwrap();
    assert!(!rejected);
    let held = limit / FRAME + 1;
    let frames = response.body().read_ahead().unwrap();
    assert!(frames <= held, "{frames} frames held");
}

#[test]
fn a_rejection_in_pieces_is_recognised_and_handed_back_intact() {
    let pieces = REJECTION.chunks(7).map(Bytes::copy_from_slice);
    let mut inspection = start(json_response(Script::new(pieces, false)), 64 * 1024);
    let (response, rejected) = judge_now(&mut inspection).unwrap();
    assert!(rejected);
    let bytes = futures_collect(response.into_body());
    assert_eq!(&bytes[..], REJECTION);
    assert!(
        judge_now(&mut inspection).is_none(),
        "an inspection ends once"
    );
}

#[test]
fn a_gzip_rejection_is_recognised_and_the_caller_gets_the_coded_bytes() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(REJECTION).unwrap();
    let coded = Bytes::from(encoder.finish().unwrap());
    let mut response = json_response(Script::new([coded.clone()], false));
    response
        .headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    let mut inspection = start(response, 64 * 1024);
    let (response, rejected) = judge_now(&mut inspection).unwrap();
    assert!(rejected);
    assert_eq!(futures_collect(response.into_body()), coded);
}

#[test]
fn a_success_is_handed_over_from_its_first_bytes() {
    let first = Bytes::from_static(br#"{"responseStatus":"SUCCESS","data":["#);
    let body = Script::new([first.clone()], true);
    let mut inspection = start(json_response(body), 64 * 1024);
    // The body stalls after its first bytes, yet the verdict is there without waiting.
    let (response, rejected) = judge_now(&mut inspection).unwrap();
    assert!(!rejected);
    let mut body = response.into_body();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let frame = Pin::new(&mut body).poll_frame(&mut cx);
    assert!(matches!(frame, Poll::Ready(Some(Ok(ref f))) if f.data_ref() == Some(&first)));
    assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
}

#[test]
fn a_success_split_anywhere_is_known_when_its_status_is_there() {
    let head = br#"{"responseStatus":"SUCCESS","#;
    for cut in 1..head.len() {
        let pieces = [
            Bytes::copy_from_slice(&head[..cut]),
            Bytes::copy_from_slice(&head[cut..]),
        ];
        let mut inspection = start(json_response(Script::new(pieces, true)), 64 * 1024);
        let (response, rejected) = judge_now(&mut inspection).unwrap();
        assert!(!rejected);
        // Handed over as soon as the status is whole: after the first piece if it holds it.
        let status_in_first = head[..cut].ends_with(b"\"SUCCESS\"");
        let read = if status_in_first { 1 } else { 2 };
        assert_eq!(response.body().read_ahead(), Some(read), "{cut}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_is_handed_over_after_the_wait() {
    let first = Bytes::from_static(b"{");
    let mut response = json_response(Script::new([first], true));
    response
        .headers_mut()
        .insert("content-length", "500".parse().unwrap());
    let wait = Duration::from_secs(3);
    let Started::Reading(mut inspection) = Inspection::start(response, 64 * 1024, wait) else {
        panic!("not read");
    };
    let began = Instant::now();
    let (response, rejected) = std::future::poll_fn(|cx| inspection.poll_judge(cx, &VaultRule))
        .await
        .unwrap();
    assert_eq!(began.elapsed(), wait);
    assert!(!rejected);
    assert_eq!(response.body().read_ahead(), Some(1));
}

/// A wait too long for the clock to add (`Duration::MAX`) is as good as never: a stalled body is
/// still held a year later.
#[tokio::test(start_paused = true)]
async fn a_wait_past_what_the_clock_can_hold_lasts_at_least_a_year() {
    let response = json_response(Script::new([Bytes::from_static(b"{")], true));
    let Started::Reading(mut inspection) = Inspection::start(response, 64 * 1024, Duration::MAX)
    else {
        panic!("not read");
    };
    let began = Instant::now();
    let _ = std::future::poll_fn(|cx| inspection.poll_judge(cx, &VaultRule)).await;
    assert!(
        began.elapsed() >= Duration::from_secs(365 * 86_400),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn no_wait_judges_what_is_there() {
    let body = Script::new([Bytes::from_static(&REJECTION[..20])], true);
    let Started::Reading(mut inspection) =
        Inspection::start(json_response(body), 64 * 1024, Duration::ZERO)
    else {
        panic!("not read");
    };
    let (_, rejected) = judge_now(&mut inspection).unwrap();
    assert!(!rejected);
}

#[test]
fn a_declared_length_over_the_bound_is_not_read() {
    let mut response = json_response(Script::new([], false));
    response
        .headers_mut()
        .insert("content-length", "1000".parse().unwrap());
    assert!(matches!(
        Inspection::start(response, 1000, DEFAULT_INSPECT_WAIT),
        Started::TooLarge(_)
    ));
}

fn futures_collect<B: Body<Data = Bytes>>(body: B) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    let mut collect = std::pin::pin!(body.collect());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match collect.as_mut().poll(&mut cx) {
        Poll::Ready(done) => done.unwrap().to_bytes(),
        Poll::Pending => panic!("the body waits"),
    }
}

/// A rule that reads every body and counts the looks at a prefix.
#[derive(Clone, Default)]
struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Counting {
    fn looks(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl FailureRule for Counting {
    fn check_head(&self, _: http::StatusCode, _: &http::HeaderMap) -> Verdict {
        Verdict::InspectBody
    }

    fn check_prefix(&self, _: http::StatusCode, _: &http::HeaderMap, _: &[u8]) -> Verdict {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Verdict::InspectBody
    }
}

/// What a [`Paced`] body does next.
enum Step {
    Data(&'static [u8]),
    /// `Pending` once.
    Pause,
    Fail,
}

/// A body that follows its steps, then ends; it never says it is at its end before that.
struct Paced(VecDeque<Step>);

impl Body for Paced {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.0.pop_front() {
            Some(Step::Data(data)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(data))))),
            Some(Step::Pause) => Poll::Pending,
            Some(Step::Fail) => Poll::Ready(Some(Err(std::io::Error::other("cut")))),
            None => Poll::Ready(None),
        }
    }
}

/// Polls until the inspection is judged, as many times as the body pauses.
fn judge_with<B: Body, R: FailureRule>(
    inspection: &mut Inspection<B>,
    rule: &R,
) -> (http::Response<ResponseBody<B>>, bool) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    loop {
        if let Poll::Ready(judged) = inspection.poll_judge(&mut cx, rule) {
            return judged.expect("judged once");
        }
    }
}

fn paced(steps: impl IntoIterator<Item = Step>, limit: usize) -> Inspection<Paced> {
    start(json_response(Paced(steps.into_iter().collect())), limit)
}

/// The prefix is looked at when the bytes read reach the next look (doubling), and at a pause
/// only if bytes came since the last look and they are still few (1 KiB at most).
#[tokio::test(start_paused = true)]
async fn a_prefix_is_looked_at_when_new_bytes_are_few_or_have_doubled() {
    const LONG: &[u8] = &[b' '; 2000];
    let rule = Counting::default();
    let mut inspection = paced(
        [
            Step::Data(b"ab"), // 2 bytes, at the first look's mark: look 1, next at 4
            Step::Data(b"c"),  // 3: not yet
            Step::Pause,       // new bytes, few of them: look 2, next at 6
            Step::Pause,       // nothing new: no look
            Step::Data(LONG),  // 2003, past 6: look 3, next at 4006
            Step::Pause,       // nothing new
            Step::Data(b"x"),  // 2004: not yet
            Step::Pause,       // new bytes, but past 1 KiB: no look
        ],
        64 * 1024,
    );
    let (_, rejected) = judge_with(&mut inspection, &rule);
    assert!(!rejected);
    assert_eq!(rule.looks(), 3);
}

/// A body read to its end, within the bound to the byte, is handed back ended: once its frames
/// are out it says it is at its end, whatever the inner body says, and is not polled again.
#[tokio::test(start_paused = true)]
async fn a_body_read_to_its_end_exactly_at_the_bound_is_handed_back_ended() {
    // Four one-byte frames fill a list of four slots: the bound is reached, not passed.
    let limit = 4 * FRAME + 4;
    let steps = (0..4).map(|_| Step::Data(b" "));
    let mut inspection = paced(steps, limit);
    let (response, rejected) = judge_with(&mut inspection, &Counting::default());
    assert!(!rejected);
    assert_eq!(response.body().read_ahead(), Some(4));
    let mut body = response.into_body();
    for _ in 0..4 {
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            " "
        );
    }
    assert!(body.is_end_stream(), "the body read to its end says so");
    assert!(body.frame().await.is_none());
}

/// A body that failed while it was read is handed back with its frames, then the error, then
/// nothing: the failed body is not polled again.
#[tokio::test(start_paused = true)]
async fn a_body_that_failed_is_not_read_after_its_error() {
    let steps = [Step::Data(b"{\"a\""), Step::Fail, Step::Data(b"after")];
    let mut inspection = paced(steps, 64 * 1024);
    let (response, rejected) = judge_with(&mut inspection, &Counting::default());
    assert!(!rejected);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "{\"a\"");
    assert!(body.frame().await.unwrap().is_err());
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none(), "polled after its error");
}

/// The capacities of the frame list as `n` one-byte frames are kept under `limit`.
fn capacities(limit: usize, n: usize) -> Vec<usize> {
    let mut inspection = paced([], limit);
    (0..n)
        .map(|_| {
            inspection.keep(Frame::data(Bytes::from_static(b" ")));
            inspection.frames.capacity()
        })
        .collect()
}

/// The list of frames doubles (from four slots) while the doubled list would fit the bound;
/// where it would pass it, it grows by one slot at a time.
#[test]
fn the_frame_list_doubles_until_doubling_would_pass_the_bound() {
    // Doubling 8 slots to 16 would pass 12 slots' worth: from there, one slot at a time.
    assert_eq!(
        capacities(12 * FRAME, 12),
        [4, 4, 4, 4, 8, 8, 8, 8, 9, 10, 11, 12]
    );
    // 16 slots and the 9 bytes read then are the bound exactly: that still fits, so it doubles.
    assert_eq!(capacities(16 * FRAME + 9, 9), [4, 4, 4, 4, 8, 8, 8, 8, 16]);
}

/// A body whose declared length and one frame's slot are the bound exactly is read; a byte
/// more is handed back unread.
#[test]
fn a_declared_length_that_fits_the_bound_exactly_is_read() {
    let declared = |len: &str| {
        let mut response = json_response(Script::new([], false));
        response
            .headers_mut()
            .insert("content-length", len.parse().unwrap());
        response
    };
    assert!(matches!(
        Inspection::start(declared("1000"), 1000 + FRAME, DEFAULT_INSPECT_WAIT),
        Started::Reading(_)
    ));
    assert!(matches!(
        Inspection::start(declared("1001"), 1000 + FRAME, DEFAULT_INSPECT_WAIT),
        Started::TooLarge(_)
    ));
}

/// The body's own size hint is held to the same bound: a body that says it holds exactly what
/// fits is read, one that says a byte more is not (hyper's hint is the declared length; a body
/// built in memory says its length itself, with no header).
#[test]
fn a_size_hint_that_fits_the_bound_exactly_is_read() {
    let sized = |len: usize| json_response(http_body_util::Full::new(Bytes::from(vec![b' '; len])));
    assert!(matches!(
        Inspection::start(sized(1000), 1000 + FRAME, DEFAULT_INSPECT_WAIT),
        Started::Reading(_)
    ));
    assert!(matches!(
        Inspection::start(sized(1001), 1000 + FRAME, DEFAULT_INSPECT_WAIT),
        Started::TooLarge(_)
    ));
}

/// A buffer in pieces (a `Buf` that is not one slice) is copied whole; one in a single piece too.
#[test]
fn a_buffer_in_pieces_is_copied_whole() {
    use bytes::Buf;
    let pieces = (&b"{\"responseStatus\":"[..]).chain(&b"\"FAILURE\"}"[..]);
    let mut out = Vec::new();
    assert!(copy_chunks(&pieces, &mut out));
    assert_eq!(out, br#"{"responseStatus":"FAILURE"}"#);
    assert_eq!(pieces.remaining(), out.len(), "not consumed");

    let mut out = Vec::new();
    assert!(copy_chunks(&Bytes::from_static(b"one piece"), &mut out));
    assert_eq!(out, b"one piece");
}
