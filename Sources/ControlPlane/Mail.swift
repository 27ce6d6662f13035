public import ServiceContract
#if canImport(Glibc)
import Glibc
#endif
public import Foundation

/// Where the control plane's mail (password resets) goes.
public enum MailDelivery: Sendable, Equatable {
    /// Nowhere: the message is dropped with a warning in the log (`cloud server` without
    /// `--smtp-host` or `--outbox`).
    case none
    /// Files `<directory>/<time>-<id>.eml` (mode 0600), for development (`cloud dev`'s default is
    /// `<data-dir>/outbox`).
    case outbox(directory: String)
    /// A plain SMTP relay (no TLS, no authentication: a local MTA or a relay on a trusted network).
    case smtp(host: String, port: Int)
}

/// One message to a person.
public struct MailMessage: Sendable, Equatable {
    public var from: String
    public var to: String
    public var subject: String
    /// Plain text, lines separated by `\n`.
    public var body: String

    public init(from: String, to: String, subject: String, body: String) {
        self.from = from
        self.to = to
        self.subject = subject
        self.body = body
    }

    /// The RFC 5322 message with CRLF line ends.
    public func rendered(messageID: String, date: Date) -> String {
        let dateText = Self.rfc5322Date(date)
        let domain = self.from.split(separator: "@").last.map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: ">")) } ?? "localhost"
        var lines = [
            "From: \(self.from)", "To: \(self.to)", "Subject: \(self.subject)", "Date: \(dateText)",
            "Message-ID: <\(messageID)@\(domain)>", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit", "",
        ]
        lines += self.body.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func rfc5322Date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }

    /// The bare address of `text` (`Ada <ada@example.com>` → `ada@example.com`).
    static func address(_ text: String) -> String {
        if let open = text.lastIndex(of: "<"), let close = text.lastIndex(of: ">"), open < close {
            return String(text[text.index(after: open)..<close])
        }
        return text.trimmingCharacters(in: .whitespaces)
    }
}

/// A delivery failure, with a message for the log.
public struct MailError: Error, Sendable, CustomStringConvertible {
    public var description: String

    init(_ description: String) { self.description = description }
}

/// Sends ``MailMessage``s as ``MailDelivery`` says. Blocking: call it on a thread pool.
public struct Mailer: Sendable {
    public var delivery: MailDelivery
    /// Seconds each SMTP connect, read or write may take.
    public var timeout: Int = 10

    public init(delivery: MailDelivery) { self.delivery = delivery }

    /// Delivers `message`.
    /// - Returns: Where it went (a file path, `host:port`), for the log; nil when delivery is off.
    @discardableResult
    public func send(_ message: MailMessage, now: Date = Date()) throws(MailError) -> String? {
        let id = SecureRandom.identifier(prefix: "", bytes: 12)
        switch self.delivery {
        case .none:
            return nil
        case .outbox(let directory):
            return try Self.writeOutbox(message.rendered(messageID: id, date: now), directory: directory, id: id, now: now)
        case .smtp(let host, let port):
            var client = SMTPConnection(host: host, port: port, timeout: self.timeout)
            try client.deliver(
                from: MailMessage.address(message.from), to: MailMessage.address(message.to),
                data: message.rendered(messageID: id, date: now))
            return "\(host):\(port)"
        }
    }

    static func writeOutbox(_ text: String, directory: String, id: String, now: Date) throws(MailError) -> String {
        let manager = FileManager.default
        do {
            try manager.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let name = "\(Int64(now.timeIntervalSince1970 * 1000))-\(id).eml"
            let temporary = directory + "/." + name + ".tmp"
            let final = directory + "/" + name
            guard manager.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw MailError("cannot write \(temporary)")
            }
            guard rename(temporary, final) == 0 else { throw MailError("cannot rename \(temporary): errno \(errno)") }
            return final
        } catch let error as MailError {
            throw error
        } catch {
            throw MailError("cannot write to the outbox \(directory): \(error)")
        }
    }
}

/// A minimal SMTP client (RFC 5321) over a blocking socket: EHLO (HELO when refused), MAIL FROM,
/// RCPT TO, DATA with dot-stuffing, QUIT. No TLS and no AUTH.
struct SMTPConnection {
    let host: String
    let port: Int
    let timeout: Int
    private var socket: Int32 = -1
    private var buffer: [UInt8] = []

    init(host: String, port: Int, timeout: Int) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    mutating func deliver(from: String, to: String, data: String) throws(MailError) {
        for address in [from, to] where address.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "<" || $0 == ">" }) {
            throw MailError("refusing to send to or from a malformed address")
        }
        try self.connect()
        defer {
            close(self.socket)
            self.socket = -1
        }
        try self.expect([220], after: nil)
        do {
            try self.expect([250], after: "EHLO localhost")
        } catch {
            try self.expect([250], after: "HELO localhost")
        }
        try self.expect([250], after: "MAIL FROM:<\(from)>")
        try self.expect([250, 251], after: "RCPT TO:<\(to)>")
        try self.expect([354], after: "DATA")
        try self.write(Self.dotStuffed(data) + ".\r\n")
        try self.expect([250], after: nil)
        try? self.expect([221], after: "QUIT")
    }

    /// `data` with CRLF line ends, a dot doubled at the start of lines that begin with one, and a
    /// final CRLF: what goes between DATA and the terminating `.` line. Works on bytes, since in a
    /// Swift string "\r\n" is one character.
    static func dotStuffed(_ data: String) -> String {
        var lines = Array(data.utf8).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
            line.last == UInt8(ascii: "\r") ? Array(line.dropLast()) : Array(line)
        }
        if lines.count > 1, lines.last?.isEmpty == true { lines.removeLast() }  // the text's own final line end
        var out: [UInt8] = []
        for line in lines {
            if line.first == UInt8(ascii: ".") { out.append(UInt8(ascii: ".")) }
            out += line
            out += [13, 10]
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func connect() throws(MailError) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(self.host, String(self.port), &hints, &result)
        guard rc == 0, let first = result else { throw MailError("cannot resolve the SMTP host \(self.host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(first) }
        var lastError: Int32 = 0
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            let fd = Glibc.socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if fd >= 0 {
                var limit = timeval(tv_sec: self.timeout, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                    self.socket = fd
                    return
                }
                lastError = errno
                close(fd)
            }
            entry = info.pointee.ai_next
        }
        throw MailError("cannot connect to the SMTP server \(self.host):\(self.port): \(String(cString: strerror(lastError)))")
    }

    private func write(_ text: String) throws(MailError) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { send(self.socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw MailError("the SMTP server \(self.host):\(self.port) stopped reading: \(String(cString: strerror(errno)))") }
            offset += sent
        }
    }

    /// Sends `command` (when given) and reads the reply; throws unless its code is one of `codes`.
    private mutating func expect(_ codes: [Int], after command: String?) throws(MailError) {
        if let command { try self.write(command + "\r\n") }
        var lines: [String] = []
        while true {
            let line = try self.readLine()
            lines.append(line)
            // The last line of a reply has a space (or nothing) after the code; others a dash.
            if line.count < 4 || line[line.index(line.startIndex, offsetBy: 3)] != "-" { break }
        }
        let code = Int(lines.last!.prefix(3)) ?? 0
        guard codes.contains(code) else {
            let what = command.map { $0.split(separator: ":").first.map(String.init) ?? $0 } ?? "the greeting"
            throw MailError("the SMTP server \(self.host):\(self.port) answered \(what) with \(lines.last!.prefix(200))")
        }
    }

    private mutating func readLine() throws(MailError) -> String {
        while true {
            if let newline = self.buffer.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(self.buffer[..<newline])
                self.buffer.removeSubrange(...newline)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            guard self.buffer.count < 64 * 1024 else { throw MailError("the SMTP server sent an overlong line") }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { recv(self.socket, $0.baseAddress, $0.count, 0) }
            guard count > 0 else {
                throw MailError("the SMTP server \(self.host):\(self.port) closed the connection or timed out")
            }
            self.buffer += chunk[..<count]
        }
    }
}
