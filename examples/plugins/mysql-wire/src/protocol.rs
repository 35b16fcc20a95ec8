//! MySQL's client/server protocol, as much of it as a session needs: the
//! handshake with `mysql_native_password`, `COM_QUERY` and its answers
//! (OK, ERR, a text result set), and packets split at 16 MiB.
//! <https://mariadb.com/kb/en/clientserver-protocol/>

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

use sha1::{Digest, Sha1};

/// The largest payload one packet carries; a longer one continues in the
/// next packet.
const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Capability flags this client asks for (the server's are and-ed in).
const LONG_PASSWORD: u32 = 1;
const LONG_FLAG: u32 = 1 << 2;
const CONNECT_WITH_DB: u32 = 1 << 3;
const PROTOCOL_41: u32 = 1 << 9;
const TRANSACTIONS: u32 = 1 << 13;
const SECURE_CONNECTION: u32 = 1 << 15;
const MULTI_RESULTS: u32 = 1 << 17;
const PLUGIN_AUTH: u32 = 1 << 19;

/// `utf8mb4_general_ci`: the connection's character set from the start.
const UTF8MB4: u8 = 45;

/// A status flag of OK and EOF packets: another result follows.
const MORE_RESULTS_EXIST: u16 = 0x0008;

const COM_QUERY: u8 = 0x03;
const COM_QUIT: u8 = 0x01;

/// What went wrong: the server's error, or the conversation itself.
#[derive(Debug)]
pub enum Failure {
    /// An ERR packet: the server's error number, SQLSTATE and message.
    Server {
        number: u16,
        state: String,
        message: String,
    },
    /// The socket failed or closed; whether a statement sent ran is unknown.
    Io(std::io::Error),
    /// The server said something this client does not understand.
    Protocol(String),
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Io(error)
    }
}

/// A column of a result set, as its definition packet describes it.
pub struct ColumnDef {
    pub name: String,
    pub charset: u16,
    pub length: u32,
    pub kind: u8,
    pub flags: u16,
}

/// A statement's answer.
pub enum Answer {
    /// Rows affected.
    Done(u64),
    /// Columns, and each row's cells as the text protocol sends them
    /// (`None` is NULL).
    Rows(Vec<ColumnDef>, Vec<Vec<Option<Vec<u8>>>>),
}

/// One connection to the server.
pub struct Wire {
    stream: BufReader<TcpStream>,
    sequence: u8,
}

/// The credentials and database of a handshake.
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: Option<&'a str>,
}

impl Wire {
    /// Connects over `stream`: reads the server's greeting and logs in.
    pub fn handshake(stream: TcpStream, login: &Login<'_>) -> Result<Self, Failure> {
        let mut wire = Wire {
            stream: BufReader::with_capacity(64 << 10, stream),
            sequence: 0,
        };
        let greeting = wire.read_packet()?;
        if greeting.first() == Some(&0xFF) {
            return Err(server_error(&greeting));
        }
        let greeting = Greeting::parse(&greeting)?;
        let mut wanted = LONG_PASSWORD
            | LONG_FLAG
            | PROTOCOL_41
            | TRANSACTIONS
            | SECURE_CONNECTION
            | MULTI_RESULTS
            | PLUGIN_AUTH;
        if login.database.is_some() {
            wanted |= CONNECT_WITH_DB;
        }
        let capabilities = wanted & greeting.capabilities;
        if capabilities & PROTOCOL_41 == 0 || capabilities & SECURE_CONNECTION == 0 {
            return Err(Failure::Protocol(
                "the server does not speak protocol 4.1 with secure authentication".into(),
            ));
        }
        let mut response = Vec::with_capacity(128);
        response.extend_from_slice(&capabilities.to_le_bytes());
        response.extend_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        response.push(UTF8MB4);
        response.extend_from_slice(&[0; 23]);
        push_nul_terminated(&mut response, login.user);
        let auth = native_password(login.password, &greeting.scramble);
        response.push(auth.len() as u8);
        response.extend_from_slice(&auth);
        if let Some(database) = login
            .database
            .filter(|_| capabilities & CONNECT_WITH_DB != 0)
        {
            push_nul_terminated(&mut response, database);
        }
        if capabilities & PLUGIN_AUTH != 0 {
            push_nul_terminated(&mut response, NATIVE_PASSWORD);
        }
        wire.write_packet(&response)?;
        wire.authenticate(login.password)?;
        Ok(wire)
    }

    /// The server's answers to the handshake response, until OK.
    fn authenticate(&mut self, password: &str) -> Result<(), Failure> {
        loop {
            let packet = self.read_packet()?;
            match packet.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(server_error(&packet)),
                // Auth switch: the server wants another plugin.
                Some(0xFE) => {
                    let mut reader = Reader::new(&packet[1..]);
                    let plugin = reader.nul_terminated()?;
                    if plugin != NATIVE_PASSWORD {
                        return Err(Failure::Protocol(format!(
                            "the server asks for authentication plugin `{plugin}`; this adapter speaks only {NATIVE_PASSWORD}"
                        )));
                    }
                    let data = reader.rest();
                    let scramble = data.strip_suffix(&[0]).unwrap_or(data);
                    let auth = native_password(password, scramble);
                    self.write_packet(&auth)?;
                }
                Some(other) => {
                    return Err(Failure::Protocol(format!(
                        "unexpected packet 0x{other:02x} during authentication"
                    )));
                }
                None => return Err(Failure::Protocol("an empty packet".into())),
            }
        }
    }

    /// Runs `sql` and reads its whole answer. Later results (a statement
    /// that returns several) are read and dropped.
    pub fn query(&mut self, sql: &str) -> Result<Answer, Failure> {
        self.command(COM_QUERY, sql.as_bytes())?;
        let (answer, mut more) = self.read_result()?;
        while more {
            more = self.read_result()?.1;
        }
        Ok(answer)
    }

    /// Says goodbye; the server closes the connection.
    pub fn quit(&mut self) {
        let _ = self.command(COM_QUIT, &[]);
    }

    fn command(&mut self, code: u8, body: &[u8]) -> Result<(), Failure> {
        self.sequence = 0;
        let mut payload = Vec::with_capacity(body.len() + 1);
        payload.push(code);
        payload.extend_from_slice(body);
        self.write_packet(&payload)
    }

    /// One result: OK, ERR or a result set; and whether another follows.
    fn read_result(&mut self) -> Result<(Answer, bool), Failure> {
        let first = self.read_packet()?;
        match first.first() {
            Some(0x00) => {
                let ok = OkPacket::parse(&first)?;
                Ok((Answer::Done(ok.affected), ok.status & MORE_RESULTS_EXIST != 0))
            }
            Some(0xFF) => Err(server_error(&first)),
            Some(0xFB) => Err(Failure::Protocol(
                "the server asked for a local file (LOAD DATA LOCAL), which this adapter does not send".into(),
            )),
            Some(_) => self.read_rows(&first),
            None => Err(Failure::Protocol("an empty packet".into())),
        }
    }

    /// A text result set whose first packet (the column count) is `first`.
    fn read_rows(&mut self, first: &[u8]) -> Result<(Answer, bool), Failure> {
        let count = Reader::new(first).lenenc_int()?;
        let mut columns = Vec::with_capacity(count.min(4096) as usize);
        for _ in 0..count {
            columns.push(ColumnDef::parse(&self.read_packet()?)?);
        }
        let eof = self.read_packet()?;
        if !is_eof(&eof) {
            return Err(Failure::Protocol(
                "no EOF after the column definitions".into(),
            ));
        }
        let mut rows = Vec::new();
        loop {
            let packet = self.read_packet()?;
            if is_eof(&packet) {
                let status = packet
                    .get(3..5)
                    .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]));
                return Ok((
                    Answer::Rows(columns, rows),
                    status & MORE_RESULTS_EXIST != 0,
                ));
            }
            if packet.first() == Some(&0xFF) {
                return Err(server_error(&packet));
            }
            let mut reader = Reader::new(&packet);
            let mut row = Vec::with_capacity(columns.len());
            for _ in 0..columns.len() {
                row.push(reader.lenenc_bytes()?.map(<[u8]>::to_vec));
            }
            rows.push(row);
        }
    }

    /// One logical packet: its parts joined when it is split.
    fn read_packet(&mut self) -> Result<Vec<u8>, Failure> {
        let mut payload = Vec::new();
        loop {
            let mut header = [0u8; 4];
            self.stream.read_exact(&mut header)?;
            let length = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
            self.sequence = header[3].wrapping_add(1);
            let start = payload.len();
            payload.resize(start + length, 0);
            self.stream.read_exact(&mut payload[start..])?;
            if length < MAX_PAYLOAD {
                return Ok(payload);
            }
        }
    }

    /// One logical packet, split as the protocol needs, in one write.
    fn write_packet(&mut self, payload: &[u8]) -> Result<(), Failure> {
        let mut framed = Vec::with_capacity(payload.len() + 4 * (payload.len() / MAX_PAYLOAD + 1));
        let mut rest = payload;
        loop {
            let length = rest.len().min(MAX_PAYLOAD);
            framed.extend_from_slice(&(length as u32).to_le_bytes()[..3]);
            framed.push(self.sequence);
            self.sequence = self.sequence.wrapping_add(1);
            framed.extend_from_slice(&rest[..length]);
            rest = &rest[length..];
            // A payload of exactly the maximum is followed by an empty one.
            if length < MAX_PAYLOAD {
                break;
            }
        }
        let stream = self.stream.get_mut();
        stream.write_all(&framed)?;
        stream.flush()?;
        Ok(())
    }
}

const NATIVE_PASSWORD: &str = "mysql_native_password";

/// `mysql_native_password`'s answer to `scramble`:
/// SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))); empty for no
/// password.
pub fn native_password(password: &str, scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let once = Sha1::digest(password.as_bytes());
    let twice = Sha1::digest(once);
    let mut salted = Sha1::new();
    salted.update(scramble);
    salted.update(twice);
    let salted = salted.finalize();
    once.iter().zip(salted.iter()).map(|(a, b)| a ^ b).collect()
}

/// The server's first packet (protocol version 10).
struct Greeting {
    capabilities: u32,
    /// The 20 bytes the password's answer is salted with.
    scramble: Vec<u8>,
}

impl Greeting {
    fn parse(packet: &[u8]) -> Result<Self, Failure> {
        let mut reader = Reader::new(packet);
        let version = reader.u8()?;
        if version != 10 {
            return Err(Failure::Protocol(format!(
                "handshake version {version}; this adapter speaks version 10"
            )));
        }
        reader.nul_terminated()?; // server version
        reader.take(4)?; // connection id
        let mut scramble = reader.take(8)?.to_vec();
        reader.take(1)?;
        let low = u32::from(reader.u16()?);
        reader.take(1)?; // character set
        reader.take(2)?; // status
        let high = u32::from(reader.u16()?);
        let capabilities = low | (high << 16);
        let auth_length = usize::from(reader.u8()?);
        reader.take(10)?;
        if capabilities & SECURE_CONNECTION != 0 {
            let second = reader.take(13.max(auth_length.saturating_sub(8)))?;
            let second = second.strip_suffix(&[0]).unwrap_or(second);
            scramble.extend_from_slice(second);
        }
        Ok(Self {
            capabilities,
            scramble,
        })
    }
}

/// An OK packet's parts that matter here.
struct OkPacket {
    affected: u64,
    status: u16,
}

impl OkPacket {
    fn parse(packet: &[u8]) -> Result<Self, Failure> {
        let mut reader = Reader::new(&packet[1..]);
        let affected = reader.lenenc_int()?;
        reader.lenenc_int()?; // last insert id
        let status = reader.u16()?;
        Ok(Self { affected, status })
    }
}

impl ColumnDef {
    fn parse(packet: &[u8]) -> Result<Self, Failure> {
        let mut reader = Reader::new(packet);
        for _ in 0..4 {
            reader.lenenc_bytes()?; // catalog, schema, table, original table
        }
        let name = String::from_utf8_lossy(reader.lenenc_bytes()?.unwrap_or_default()).into_owned();
        reader.lenenc_bytes()?; // original name
        reader.lenenc_int()?; // length of the fixed fields
        let charset = reader.u16()?;
        let length = u32::from_le_bytes(take4(&mut reader)?);
        let kind = reader.u8()?;
        let flags = reader.u16()?;
        Ok(Self {
            name,
            charset,
            length,
            kind,
            flags,
        })
    }
}

fn take4(reader: &mut Reader<'_>) -> Result<[u8; 4], Failure> {
    let bytes = reader.take(4)?;
    Ok([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// An EOF packet (0xFE, shorter than any row that starts with 0xFE).
fn is_eof(packet: &[u8]) -> bool {
    packet.first() == Some(&0xFE) && packet.len() < 9
}

/// An ERR packet as a failure.
fn server_error(packet: &[u8]) -> Failure {
    let mut reader = Reader::new(packet.get(1..).unwrap_or_default());
    let number = reader.u16().unwrap_or(0);
    let rest = reader.rest();
    let (state, message) = match rest.strip_prefix(b"#") {
        Some(marked) if marked.len() >= 5 => (
            String::from_utf8_lossy(&marked[..5]).into_owned(),
            &marked[5..],
        ),
        _ => ("HY000".to_string(), rest),
    };
    Failure::Server {
        number,
        state,
        message: String::from_utf8_lossy(message).into_owned(),
    }
}

fn push_nul_terminated(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

/// Reads a packet's fields in order.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Failure> {
        if self.bytes.len() < n {
            return Err(Failure::Protocol("a packet ends early".into()));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, Failure> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Failure> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Text up to a NUL (or the packet's end, which some servers send
    /// instead of the last NUL).
    fn nul_terminated(&mut self) -> Result<String, Failure> {
        let end = self
            .bytes
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.bytes.len());
        let text = String::from_utf8_lossy(&self.bytes[..end]).into_owned();
        self.bytes = self.bytes.get(end + 1..).unwrap_or_default();
        Ok(text)
    }

    /// A length-encoded integer; 0xFB (NULL) is refused here.
    fn lenenc_int(&mut self) -> Result<u64, Failure> {
        self.lenenc()?
            .ok_or_else(|| Failure::Protocol("NULL where a length belongs".into()))
    }

    /// A length-encoded integer, `None` for NULL (0xFB).
    fn lenenc(&mut self) -> Result<Option<u64>, Failure> {
        let wide = |bytes: &[u8]| {
            let mut all = [0u8; 8];
            all[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(all)
        };
        Ok(Some(match self.u8()? {
            0xFB => return Ok(None),
            0xFC => wide(self.take(2)?),
            0xFD => wide(self.take(3)?),
            0xFE => wide(self.take(8)?),
            0xFF => return Err(Failure::Protocol("0xFF where a length belongs".into())),
            small => u64::from(small),
        }))
    }

    /// A length-encoded string, `None` for NULL.
    fn lenenc_bytes(&mut self) -> Result<Option<&'a [u8]>, Failure> {
        match self.lenenc()? {
            None => Ok(None),
            Some(length) => {
                let length = usize::try_from(length)
                    .map_err(|_| Failure::Protocol("a value longer than memory".into()))?;
                self.take(length).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_native_password_answer_matches_the_servers_formula() {
        // From MySQL's own test of scramble(): password "password" and a
        // fixed 20-byte salt.
        let scramble = b"01234567890123456789";
        let answer = native_password("password", scramble);
        let once = Sha1::digest(b"password");
        let twice = Sha1::digest(once);
        // The server checks SHA1(answer XOR SHA1(scramble + stored)) == stored.
        let mut salted = Sha1::new();
        salted.update(scramble);
        salted.update(twice);
        let salted = salted.finalize();
        let recovered: Vec<u8> = answer
            .iter()
            .zip(salted.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(Sha1::digest(&recovered).as_slice(), twice.as_slice());
        assert!(native_password("", scramble).is_empty());
    }

    #[test]
    fn length_encoded_integers_and_strings() {
        let mut reader = Reader::new(&[0x05, 0xFC, 0x01, 0x02, 0xFB, 0x02, b'h', b'i']);
        assert_eq!(reader.lenenc_int().unwrap(), 5);
        assert_eq!(reader.lenenc_int().unwrap(), 0x0201);
        assert_eq!(reader.lenenc_bytes().unwrap(), None);
        assert_eq!(reader.lenenc_bytes().unwrap(), Some(&b"hi"[..]));
        assert!(matches!(reader.u8(), Err(Failure::Protocol(_))));
    }

    #[test]
    fn an_err_packet_gives_number_state_and_message() {
        let mut packet = vec![0xFF, 0x7a, 0x04];
        packet.extend_from_slice(b"#42S02Table 'w.x' doesn't exist");
        let Failure::Server {
            number,
            state,
            message,
        } = server_error(&packet)
        else {
            panic!("a server error");
        };
        assert_eq!((number, state.as_str()), (1146, "42S02"));
        assert_eq!(message, "Table 'w.x' doesn't exist");
    }

    #[test]
    fn only_short_0xfe_packets_end_a_result_set() {
        assert!(is_eof(&[0xFE, 0, 0, 2, 0]));
        assert!(!is_eof(&[0xFE, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
        assert!(!is_eof(&[0x01, b'x']));
    }
}
