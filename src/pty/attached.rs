//! The holder's attached clients: each one's queue of frames, the task
//! that sends them, what it may do (watch, write, take the lease), and
//! the terminal the writer lends (see [`super::direct`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use tokio::io::BufReader;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

use super::direct::{Direct, FdReader};
use super::holder::{frame, queue_input, Shared};
use super::proto::{self, Hello, Mode};

/// Output queued for one client before it counts as lagging: it then gets
/// a fresh screen when it catches up instead of every byte (as tmux
/// redraws a slow client), so no client can hold the program back.
const CLIENT_QUEUE: usize = 4 << 20;
/// The most sent in one write.
const BATCH: usize = 256 * 1024;

pub(super) struct Client {
    read_only: bool,
    /// Encoded frames waiting for the socket (output and snapshots go to
    /// the lent terminal instead, while there is one).
    queue: RefCell<VecDeque<Rc<[u8]>>>,
    queued: Cell<usize>,
    /// It lagged: its queue was dropped and it gets a snapshot instead.
    resync: Cell<bool>,
    closed: Cell<bool>,
    pub(super) size: Cell<Option<(u16, u16)>>,
    wake: Notify,
    /// Its writer ended (all sent, or the connection broke).
    pub(super) done: Notify,
    /// The terminal this client lent, while it writes.
    direct: RefCell<Option<Rc<Direct>>>,
}

impl Client {
    /// Drops the output queued (and snapshots) and queues `frames`
    /// instead (a redraw: the snapshot among them draws what the dropped
    /// output did). What says something else (the lease, the terminal,
    /// sizes) stays, in order.
    pub(super) fn restart_with(&self, frames: &[Rc<[u8]>]) {
        self.queue.borrow_mut().retain(|f| !drawn(f));
        self.queue_after(frames);
    }

    /// Queues `frames` alone: the first frames of a client.
    fn start_with(&self, frames: &[Rc<[u8]>]) {
        self.queue.borrow_mut().clear();
        self.queue_after(frames);
    }

    fn queue_after(&self, frames: &[Rc<[u8]>]) {
        if self.closed.get() {
            return;
        }
        let mut q = self.queue.borrow_mut();
        q.extend(frames.iter().cloned());
        self.queued.set(q.iter().map(|f| f.len()).sum());
        self.resync.set(false);
        drop(q);
        self.wake.notify_one();
    }

    pub(super) fn push(&self, frame: Rc<[u8]>) {
        if self.resync.get() || self.closed.get() {
            return;
        }
        if self.queued.get() + frame.len() > CLIENT_QUEUE {
            self.queue.borrow_mut().clear();
            self.queued.set(0);
            self.resync.set(true);
        } else {
            self.queued.set(self.queued.get() + frame.len());
            self.queue.borrow_mut().push_back(frame);
        }
        self.wake.notify_one();
    }

    /// The end of the session: `last` is the final frame.
    pub(super) fn close_with(&self, last: Rc<[u8]>) {
        self.push(last);
        self.closed.set(true);
    }

    /// It got the write lease: ask for its terminal (an older client
    /// skips the frame and draws as before).
    pub(super) fn granted(&self) {
        self.push(frame(proto::LEASE, &[1]));
        self.push(frame(proto::TERMINAL, &[proto::LEND]));
    }

    /// Gives the lent terminal back, if any: `why` is [`proto::BACK`] or
    /// [`proto::DETACHED`]. What was queued for it goes to the socket,
    /// which the client draws as before; `redraw` (size, then snapshot)
    /// brings the client's own view of the screen up to date.
    pub(super) fn give_back(&self, why: u8, redraw: Option<[Rc<[u8]>; 2]>) {
        let Some(d) = self.direct.borrow_mut().take() else {
            return;
        };
        d.stop();
        self.push(frame(proto::TERMINAL, &[why]));
        for f in redraw.into_iter().flatten() {
            self.push(f);
        }
    }
}

pub(super) async fn serve_attached(
    hello: Hello,
    session: Shared,
    input_wake: Rc<Notify>,
    mut r: BufReader<FdReader>,
    w: OwnedWriteHalf,
) {
    let client = Rc::new(Client {
        read_only: hello.mode == Mode::ReadOnly,
        queue: RefCell::new(VecDeque::new()),
        queued: Cell::new(0),
        resync: Cell::new(false),
        closed: Cell::new(false),
        size: Cell::new(hello.rows.zip(hello.cols)),
        wake: Notify::new(),
        done: Notify::new(),
        direct: RefCell::new(None),
    });
    let id = {
        let mut s = session.borrow_mut();
        let id = s.next_client;
        s.next_client += 1;
        s.clients.insert(id, client.clone());
        let wants = match hello.mode {
            Mode::Take => true,
            Mode::Attach => s.lease.is_none(),
            _ => false,
        };
        // The lease first: it may resize the screen the snapshot draws.
        if wants {
            s.grant(id);
        }
        // Then the size, the screen and the lease, in place of what the
        // grant queued (a resize's redraw, the lease).
        let held = s.lease == Some(id);
        let lease = frame(proto::LEASE, &[u8::from(held)]);
        let (size, snap) = (s.size_frame(), s.snapshot());
        client.start_with(&[size, snap, lease]);
        if held {
            client.push(frame(proto::TERMINAL, &[proto::LEND]));
        }
        id
    };
    let writer = tokio::task::spawn_local(write_client(session.clone(), client.clone(), w));
    while let Ok(Some(f)) = proto::read_frame(&mut r).await {
        let mut s = session.borrow_mut();
        if f.kind == proto::REDRAW {
            client.restart_with(&s.redraw());
            continue;
        }
        if client.read_only {
            continue;
        }
        match f.kind {
            proto::INPUT => {
                drop(s);
                typed(&session, id, &input_wake, &f.payload);
            }
            proto::RESIZE => {
                if let Some((rows, cols)) = proto::parse_resize(&f.payload) {
                    client.size.set(Some((rows, cols)));
                    if s.lease == Some(id) {
                        s.resize(rows, cols);
                    }
                }
            }
            proto::TAKE => s.grant(id),
            proto::TERMINAL => {
                let fds = r.get_mut().take_fds();
                let lent = (s.lease == Some(id) && client.direct.borrow().is_none())
                    .then(|| Direct::new(fds, &f.payload))
                    .flatten();
                drop(s);
                match lent {
                    Some(d) => lend(&session, id, &client, d, &input_wake),
                    // Not the writer (any more), or not a terminal: the
                    // client keeps drawing itself.
                    None => client.push(frame(proto::TERMINAL, &[proto::BACK])),
                }
            }
            _ => {}
        }
    }
    let mut s = session.borrow_mut();
    s.clients.remove(&id);
    if s.lease == Some(id) {
        s.lease = None;
    }
    drop(s);
    // The peer is gone: nothing more to send, and a write to its lent
    // terminal (which would keep it open) is not waited for.
    client.give_back(proto::BACK, None);
    client.closed.set(true);
    client.queue.borrow_mut().clear();
    writer.abort();
    client.done.notify_one();
}

/// Keys from client `id`: for the program if it writes (the lease is
/// taken when free).
fn typed(session: &Shared, id: u64, input_wake: &Notify, keys: &[u8]) {
    let mut s = session.borrow_mut();
    if s.lease.is_none() {
        s.grant(id);
    }
    if s.lease == Some(id) {
        drop(s);
        let _ = queue_input(session, input_wake, keys);
    }
}

/// The holder reads and draws the client's terminal from now on.
fn lend(session: &Shared, id: u64, client: &Rc<Client>, d: Direct, input_wake: &Rc<Notify>) {
    let d = Rc::new(d);
    *client.direct.borrow_mut() = Some(d.clone());
    let task = tokio::task::spawn_local(read_lent(
        session.clone(),
        id,
        client.clone(),
        d.clone(),
        input_wake.clone(),
    ));
    d.reader.set(Some(task.abort_handle()));
}

/// Reads the keys typed on a lent terminal, until the detach keys or its
/// hangup (or the terminal goes back, which stops this task).
async fn read_lent(session: Shared, id: u64, client: Rc<Client>, d: Rc<Direct>, wake: Rc<Notify>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match d.read(&mut buf).await {
            Ok(n) if n > 0 => n,
            // Hung up (the client dies with it) or unreadable: back.
            _ => break,
        };
        let (keys, detached) = d.matcher.borrow_mut().feed(&buf[..n]);
        if !keys.is_empty() {
            typed(&session, id, &wake, &keys);
        }
        if detached {
            drop(d);
            client.give_back(proto::DETACHED, None);
            return;
        }
    }
    drop(d);
    let redraw = session.borrow_mut().redraw();
    client.give_back(proto::BACK, Some(redraw));
}

async fn write_client(session: Shared, client: Rc<Client>, w: OwnedWriteHalf) {
    send_to_client(&session, &client, w).await;
    // A stored permit: a waiter that comes later still sees it.
    client.done.notify_one();
}

/// Where a frame goes: the lent terminal takes what is drawn (its
/// payload, as it is), the socket everything else (encoded).
fn drawn(f: &[u8]) -> bool {
    matches!(f.first(), Some(&proto::OUTPUT) | Some(&proto::SNAPSHOT))
}

async fn send_to_client(session: &Shared, client: &Client, mut w: OwnedWriteHalf) {
    use tokio::io::AsyncWriteExt as _;
    let mut frames: Vec<Rc<[u8]>> = Vec::new();
    let (mut to_socket, mut to_terminal) = (Vec::new(), Vec::new());
    loop {
        if client.resync.replace(false) {
            frames.push(session.borrow_mut().snapshot());
        }
        {
            let mut q = client.queue.borrow_mut();
            let mut size = 0;
            while let Some(f) = q.pop_front() {
                size += f.len();
                frames.push(f);
                if size >= BATCH {
                    break;
                }
            }
            client.queued.set(q.iter().map(|f| f.len()).sum());
        }
        if frames.is_empty() {
            if client.closed.get() {
                return;
            }
            client.wake.notified().await;
            continue;
        }
        let direct = client.direct.borrow().clone();
        // In order; each run of frames for one side in one write.
        for f in frames.drain(..) {
            match &direct {
                Some(_) if drawn(&f) => {
                    if !to_socket.is_empty() && w.write_all(&to_socket).await.is_err() {
                        return broke(client);
                    }
                    to_socket.clear();
                    to_terminal.extend_from_slice(&f[5..]);
                }
                _ => {
                    if let Some(d) = direct.as_ref().filter(|_| !to_terminal.is_empty()) {
                        lent_write(session, client, d, &to_terminal).await;
                    }
                    to_terminal.clear();
                    to_socket.extend_from_slice(&f);
                }
            }
        }
        if let Some(d) = direct.as_ref().filter(|_| !to_terminal.is_empty()) {
            lent_write(session, client, d, &to_terminal).await;
        }
        to_terminal.clear();
        if !to_socket.is_empty() && w.write_all(&to_socket).await.is_err() {
            return broke(client);
        }
        to_socket.clear();
    }
}

/// Draws on the lent terminal; one that cannot be written goes back (the
/// client redraws from the snapshot that follows).
async fn lent_write(session: &Shared, client: &Client, d: &Direct, bytes: &[u8]) {
    if d.write_all(bytes).await.is_err() {
        let redraw = session.borrow_mut().redraw();
        client.give_back(proto::BACK, Some(redraw));
    }
}

fn broke(client: &Client) {
    client.give_back(proto::BACK, None);
    client.closed.set(true);
    client.queue.borrow_mut().clear();
}

/// The connection's read half, keeping the descriptors a client lends.
pub(super) fn reader(r: OwnedReadHalf) -> BufReader<FdReader> {
    // A frame in one read, not three (kind, length, payload): each system
    // call is on a keystroke's way to the program.
    BufReader::with_capacity(16 << 10, FdReader::new(r))
}
