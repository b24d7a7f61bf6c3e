use std::time::Duration;

use super::*;

#[tokio::test]
async fn journal_queue_gives_everything_in_order_then_ends_when_closed() {
    let j = Journal::default();
    j.queue(b"one\r\n");
    j.queue(b"two\r\n");
    // Under the backlog: room at once.
    tokio::time::timeout(Duration::from_secs(5), j.room())
        .await
        .expect("room under the backlog");
    let (chunks, bytes) = j.take().unwrap();
    assert_eq!(chunks, [b"one\r\n".to_vec(), b"two\r\n".to_vec()]);
    assert_eq!((bytes, j.backlog()), (10, 0));
    j.queue(b"three");
    j.close();
    // What was queued before the close is still given, then the end.
    assert_eq!(j.take().unwrap().0, [b"three".to_vec()]);
    j.queue(b"late");
    assert!(j.take().is_none());
}
