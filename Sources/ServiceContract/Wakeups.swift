/// Wakes waiters in this process when something they wait for may have happened here: long-polling
/// receivers of a queue when a message is sent to it, task runners when a task is enqueued.
///
/// Each key has a generation that every signal raises. A waiter reads the generation before it
/// looks (for messages, for due tasks) and waits only while the generation is unchanged, so a signal
/// between its look and its wait is never missed. Waiters in other processes are not woken by it:
/// they look again after their poll interval (the database is the only thing processes share).
public actor Wakeups {
    public init() {}

    private var generations: [String: UInt64] = [:]
    private var waiters: [String: [Int: CheckedContinuation<Void, Never>]] = [:]
    private var nextWaiter = 0

    public static func key(tenantID: String, queue: String) -> String { tenantID + "\u{0}" + queue }

    /// The key's generation now.
    public func generation(_ key: String) -> UInt64 { self.generations[key, default: 0] }

    /// How many wait on the key now.
    public func waiting(_ key: String) -> Int { self.waiters[key]?.count ?? 0 }

    /// Raises the key's generation and wakes its waiters.
    public func signal(_ key: String) {
        self.generations[key, default: 0] &+= 1
        if let waiting = self.waiters.removeValue(forKey: key) {
            for continuation in waiting.values { continuation.resume() }
        }
    }

    /// Returns when the key's generation differs from `seen`, or after `timeout`, whichever is first.
    /// - Returns: True when a signal woke it (or had already raised the generation), false when the timeout ended it.
    @discardableResult
    public func wait(_ key: String, seen: UInt64, timeout: Duration) async -> Bool {
        guard self.generations[key, default: 0] == seen else { return true }
        let id = self.nextWaiter
        self.nextWaiter += 1
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: timeout)
                await self.release(key, id)
            }
            await withCheckedContinuation { continuation in
                self.waiters[key, default: [:]][id] = continuation
            }
            group.cancelAll()
        }
        return self.generations[key, default: 0] != seen
    }

    /// Wakes one waiter (its timeout ended); a waiter already woken by a signal is gone.
    private func release(_ key: String, _ id: Int) {
        if let continuation = self.waiters[key]?.removeValue(forKey: id) {
            if self.waiters[key]?.isEmpty == true { self.waiters[key] = nil }
            continuation.resume()
        }
    }
}
