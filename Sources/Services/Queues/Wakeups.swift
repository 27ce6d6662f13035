/// Wakes long-polling receivers of a queue in this process when a message is sent to it here.
///
/// Each queue has a generation that every send raises. A receiver reads the generation before it
/// looks for messages and waits only while the generation is unchanged, so a send between its look
/// and its wait is never missed. Receivers in other processes are not woken by it: they look again
/// after ``QueueEngine/pollInterval`` (the database is the only thing processes share).
actor Wakeups {
    private var generations: [String: UInt64] = [:]
    private var waiters: [String: [Int: CheckedContinuation<Void, Never>]] = [:]
    private var nextWaiter = 0

    static func key(tenantID: String, queue: String) -> String { tenantID + "\u{0}" + queue }

    /// The queue's generation now.
    func generation(_ key: String) -> UInt64 { self.generations[key, default: 0] }

    /// How many receivers wait on the queue now.
    func waiting(_ key: String) -> Int { self.waiters[key]?.count ?? 0 }

    /// Raises the queue's generation and wakes its waiters.
    func signal(_ key: String) {
        self.generations[key, default: 0] &+= 1
        if let waiting = self.waiters.removeValue(forKey: key) {
            for continuation in waiting.values { continuation.resume() }
        }
    }

    /// Returns when the queue's generation differs from `seen`, or after `timeout`, whichever is first.
    /// - Returns: True when a send woke it (or had already raised the generation), false when the timeout ended it.
    @discardableResult
    func wait(_ key: String, seen: UInt64, timeout: Duration) async -> Bool {
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
