//! The socket under lapin: a TCP stream whose incoming frames pass through the
//! [`Sanitizer`] before lapin parses them.
//!
//! lapin takes its sockets from the runtime it is given (async-rs), so the worker gives
//! it tokio's executor beside a reactor of its own, [`SanitizingReactor`], that hands
//! out [`Sanitized`] TCP streams. Nothing of lapin or amq-protocol is copied or patched.
//!
//! TLS (`amqps://`) is done here too, between the socket and the sanitizer, so that the
//! sanitizer reads frames in clear: lapin is handed a plain `amqp://` connection.

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::os::fd::{AsFd, AsRawFd};

use async_rs::traits::Reactor;
use async_rs::util::RuntimeParts;
use async_rs::{Runtime, Tokio};
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::Stream;

use super::sanitize::Sanitizer;
use super::tls::Tls;

/// How much a [`Sanitized`] stream reads from its socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// The runtime lapin connections run on: tokio, with sanitized sockets.
pub type SanitizingRuntime = Runtime<RuntimeParts<Tokio, SanitizingReactor>>;

/// The runtime for a connection made from within the current tokio runtime; its
/// sanitizer drops bodies over `body_limit` bytes if one is given, and its sockets speak
/// TLS if `tls` is given.
pub fn runtime(body_limit: Option<u64>, tls: Option<Tls>) -> SanitizingRuntime {
    Runtime::new(RuntimeParts::new(
        Tokio::current(),
        SanitizingReactor {
            tokio: Tokio::current(),
            body_limit,
            tls,
        },
    ))
}

/// tokio's reactor, except that its TCP streams are [`Sanitized`] (and encrypted, for
/// `amqps://`).
#[derive(Clone, Debug)]
pub struct SanitizingReactor {
    tokio: Tokio,
    body_limit: Option<u64>,
    tls: Option<Tls>,
}

type Tcp = <Tokio as Reactor>::TcpStream;

impl Reactor for SanitizingReactor {
    type TcpStream = Sanitized<Socket>;
    type Sleep = <Tokio as Reactor>::Sleep;

    // async-rs bounds `H` by a trait it does not export, made of these two.
    fn register<H: Read + Write + AsFd + AsRawFd + Send + 'static>(
        &self,
        socket: H,
    ) -> io::Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static> {
        self.tokio.register(socket)
    }

    fn sleep(&self, dur: Duration) -> Self::Sleep {
        self.tokio.sleep(dur)
    }

    fn interval(&self, dur: Duration) -> impl Stream<Item = Instant> + Send + 'static {
        self.tokio.interval(dur)
    }

    fn tcp_connect_addr(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::TcpStream>> + Send + 'static {
        let connect = self.tokio.tcp_connect_addr(addr);
        let sanitizer = match self.body_limit {
            Some(limit) => Sanitizer::with_body_limit(limit),
            None => Sanitizer::default(),
        };
        let tls = self.tls.clone();
        async move {
            let socket = connect.await?;
            let socket = match tls {
                None => Socket::Plain(socket),
                Some(tls) => Socket::Tls(Box::new(tls.handshake(socket).await?)),
            };
            Ok(Sanitized::new(socket, sanitizer))
        }
    }
}

/// A connection to the broker, in clear or in TLS.
pub enum Socket {
    /// `amqp://`.
    Plain(Tcp),
    /// `amqps://`.
    Tls(Box<futures_rustls::client::TlsStream<Tcp>>),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(socket) => Pin::new(socket).poll_read(cx, buf),
            Socket::Tls(socket) => Pin::new(socket.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            Socket::Tls(socket) => Pin::new(socket.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
            Socket::Tls(socket) => Pin::new(socket.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(socket) => Pin::new(socket).poll_flush(cx),
            Socket::Tls(socket) => Pin::new(socket.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(socket) => Pin::new(socket).poll_close(cx),
            Socket::Tls(socket) => Pin::new(socket.as_mut()).poll_close(cx),
        }
    }
}

/// A stream whose reads are whole AMQP frames, rewritten by a [`Sanitizer`] where
/// lapin could not parse them. Writes pass through.
pub struct Sanitized<S> {
    inner: S,
    sanitizer: Sanitizer,
    /// Sanitized bytes not yet read, from `offset` on.
    ready: Vec<u8>,
    offset: usize,
    chunk: Box<[u8]>,
    eof: bool,
}

impl<S> Sanitized<S> {
    /// Wraps a connected socket.
    pub fn new(inner: S, sanitizer: Sanitizer) -> Sanitized<S> {
        Sanitized {
            inner,
            sanitizer,
            ready: Vec::new(),
            offset: 0,
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            eof: false,
        }
    }
}

impl<S> fmt::Debug for Sanitized<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sanitized")
            .field("repaired", &self.sanitizer.repaired())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sanitized<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if this.offset < this.ready.len() {
                let n = buf.len().min(this.ready.len() - this.offset);
                buf[..n].copy_from_slice(&this.ready[this.offset..this.offset + n]);
                this.offset += n;
                if this.offset == this.ready.len() {
                    this.ready.clear();
                    this.offset = 0;
                }
                return Poll::Ready(Ok(n));
            }
            if this.eof || buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            match Pin::new(&mut this.inner).poll_read(cx, &mut this.chunk) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(0)) => {
                    this.sanitizer.finish(&mut this.ready);
                    this.eof = true;
                }
                Poll::Ready(Ok(n)) => this.sanitizer.feed(&this.chunk[..n], &mut this.ready),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sanitized<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
