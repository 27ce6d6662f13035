/// `"host:port"` strings as flags, gossip and the cluster's RPC carry them.
public enum HostPort {
    /// Splits `"host:port"` or `"[v6 address]:port"`; nil when malformed, when an IPv6 literal is not
    /// bracketed, or when the port is outside 0...65535. The host may be empty (`":9000"`); callers
    /// decide what that means.
    public static func split(_ address: String) -> (host: String, port: Int)? {
        let host: Substring
        let portText: Substring
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]") else { return nil }
            host = address[address.index(after: address.startIndex)..<close]
            let rest = address[address.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = address.lastIndex(of: ":") else { return nil }
            host = address[..<colon]
            portText = address[address.index(after: colon)...]
            // An unbracketed IPv6 literal is ambiguous.
            if host.contains(":") { return nil }
        }
        guard let port = Int(portText), (0...65535).contains(port) else { return nil }
        return (String(host), port)
    }

    /// Joins a host and port, bracketing IPv6 literals.
    public static func join(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
