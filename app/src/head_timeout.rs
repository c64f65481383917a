//! A deadline for request heads. hyper can time out a slow request head
//! (`header_read_timeout`), but only when it is given a timer, and poem's server gives it
//! none: a client sending its headers one byte a second holds a connection, and its task,
//! for as long as it likes. This wraps every accepted connection instead: a request head
//! (everything up to the blank line) must arrive within the timeout, counted from the
//! connection's start and then from the first byte of each following request; otherwise
//! reading fails and the server closes the connection.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Sleep, sleep},
};

/// How long a client may take to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Wraps the connections an acceptor accepts in [`HeadDeadline`].
pub struct HeadTimeout<A> {
    inner: A,
    timeout: Duration,
}

impl<A> HeadTimeout<A> {
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<A: Acceptor> Acceptor for HeadTimeout<A> {
    type Io = HeadDeadline<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((HeadDeadline::new(io, self.timeout), local, remote, scheme))
    }
}

/// Where a connection is in its request/response cycle.
enum Phase {
    /// Reading a request head, which must be complete before the deadline. `matched`
    /// counts how much of the `\r\n\r\n` that ends it the bytes so far end with.
    Head {
        deadline: Pin<Box<Sleep>>,
        matched: usize,
    },
    /// The head is in: the body is read and the response written without a deadline.
    Body,
    /// A response was written; the next byte read starts a new head.
    Idle,
}

pub struct HeadDeadline<T> {
    inner: T,
    timeout: Duration,
    phase: Phase,
}

impl<T> HeadDeadline<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            phase: Phase::Head {
                deadline: Box::pin(sleep(timeout)),
                matched: 0,
            },
        }
    }

    /// Follows the bytes just read through the end-of-head marker.
    fn observe(&mut self, bytes: &[u8]) {
        const END: &[u8] = b"\r\n\r\n";
        if bytes.is_empty() {
            return;
        }
        if matches!(self.phase, Phase::Idle) {
            self.phase = Phase::Head {
                deadline: Box::pin(sleep(self.timeout)),
                matched: 0,
            };
        }
        if let Phase::Head { matched, .. } = &mut self.phase {
            for &byte in bytes {
                *matched = if byte == END[*matched] {
                    *matched + 1
                } else if byte == END[0] {
                    1
                } else {
                    0
                };
                if *matched == END.len() {
                    self.phase = Phase::Body;
                    return;
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Phase::Head { deadline, .. } = &mut self.phase
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received in time",
            )));
        }
        let filled = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let this = &mut *self;
            this.observe(&buf.filled()[filled..]);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.phase, Phase::Body) {
            self.phase = Phase::Idle;
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.phase, Phase::Body) {
            self.phase = Phase::Idle;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase_after(chunks: &[&[u8]]) -> &'static str {
        let mut io = HeadDeadline::new((), Duration::from_secs(1));
        for chunk in chunks {
            io.observe(chunk);
        }
        match io.phase {
            Phase::Head { .. } => "head",
            Phase::Body => "body",
            Phase::Idle => "idle",
        }
    }

    #[tokio::test]
    async fn the_blank_line_ends_the_head_even_split_across_reads() {
        assert_eq!(phase_after(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]), "head");
        assert_eq!(phase_after(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]), "body");
        assert_eq!(
            phase_after(&[b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n"]),
            "body"
        );
        assert_eq!(phase_after(&[b"GET / HTTP/1.1\r\n\r\r\n"]), "head");
    }
}
