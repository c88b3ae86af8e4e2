//! A real HTTP/1.1 server on loopback standing in for State Hub: it records every request and
//! answers as the test scripts it (200, 500, 429 with `Retry-After`, 401, a redirect, or
//! never). Written on `std::net` so that what is tested is sandboxer's real client against a
//! real socket, with faults (hanging, refusing) a real server can be made to show.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status the server answered with; `None` when it never answered.
    pub answered: Option<u16>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The CloudEvents of the batch.
    pub fn events(&self) -> Vec<Value> {
        let batch: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("a batch is JSON ({err}): {}", self.body));
        batch.as_array().expect("a batch is a JSON array").clone()
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Status {
        code: u16,
        headers: Vec<(String, String)>,
    },
    /// Keep the connection open and never answer.
    Hang,
    /// Answer after a delay.
    After(Duration, Box<Reply>),
}

impl Reply {
    pub fn code(code: u16) -> Reply {
        Reply::Status {
            code,
            headers: Vec::new(),
        }
    }

    pub fn with_header(code: u16, name: &str, value: &str) -> Reply {
        Reply::Status {
            code,
            headers: vec![(name.to_owned(), value.to_owned())],
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Reply::Status { code, .. } => Some(*code),
            Reply::Hang => None,
            Reply::After(_, reply) => reply.status(),
        }
    }
}

/// Decides the reply to the `n`th request (0-based).
type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

/// The server; stops when dropped.
pub struct HubServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl HubServer {
    /// A server answering every request with `script`.
    pub fn start(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let acceptor = {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (requests, stop, script) = (
                                Arc::clone(&requests),
                                Arc::clone(&stop),
                                Arc::clone(&script),
                            );
                            std::thread::spawn(move || serve(stream, &requests, &stop, &*script));
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(err) => panic!("accepting: {err}"),
                    }
                }
            })
        };
        HubServer {
            addr,
            requests,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// A State Hub that takes everything at once.
    pub fn healthy() -> HubServer {
        HubServer::start(|_, _| Reply::code(200))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// The events of every batch answered with a 2xx, in the order they arrived.
    pub fn delivered(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|request| {
                request
                    .answered
                    .is_some_and(|code| (200..300).contains(&code))
            })
            .flat_map(Received::events)
            .collect()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A URL where nothing listens: a port bound once and released.
pub fn down_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Serves one connection: requests one after another (keep-alive) until the client closes it.
fn serve(stream: TcpStream, requests: &Mutex<Vec<Received>>, stop: &AtomicBool, script: &Script) {
    // Reads block: a connection ends when sandboxer closes it (or exits).
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let Some(mut request) = read_request(&mut reader) else {
            return;
        };
        let n = {
            let requests = requests.lock().unwrap();
            requests.len()
        };
        let reply = script(n, &request);
        request.answered = reply.status();
        requests.lock().unwrap().push(request);
        if !answer(&mut writer, &reply, stop) {
            return;
        }
    }
}

/// Writes the reply; false when the connection is done (a hang, a write error).
fn answer(writer: &mut TcpStream, reply: &Reply, stop: &AtomicBool) -> bool {
    match reply {
        Reply::Hang => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        }
        Reply::After(delay, reply) => {
            let until = Instant::now() + *delay;
            while Instant::now() < until {
                if stop.load(Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            answer(writer, reply, stop)
        }
        Reply::Status { code, headers } => {
            let body = format!("{{\"status\":{code}}}");
            let mut text = format!(
                "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                reason(*code),
                body.len()
            );
            for (name, value) in headers {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
            text.push_str("\r\n");
            text.push_str(&body);
            writer.write_all(text.as_bytes()).is_ok() && writer.flush().is_ok()
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        202 => "Accepted",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

/// Reads one request (headers, then a `content-length` body); `None` at the end of the
/// connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            if head.is_empty() {
                continue;
            }
            break;
        }
        head.push(line.to_owned());
    }
    let at = Instant::now();
    let mut request_line = head[0].split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = head[1..]
        .iter()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        path,
        headers,
        body: String::from_utf8(body).expect("a UTF-8 body"),
        answered: None,
        at,
    })
}
