extension Gossip {
    /// The piggyback queue (SWIM §4.1, memberlist `TransmitLimitedQueue`): each update is sent a bounded
    /// number of times, least-sent first, and a newer update about a subject replaces the older one.
    struct DisseminationQueue: Sendable {
        struct Item: Sendable {
            var update: Update
            var transmits: Int
            var order: UInt64
            var size: Int
        }

        private(set) var items: [Update.Subject: Item] = [:]
        private var counter: UInt64 = 0

        var isEmpty: Bool { items.isEmpty }
        var count: Int { items.count }

        /// Queues `update`, replacing any queued update about the same subject.
        mutating func enqueue(_ update: Update) {
            counter += 1
            items[update.subject] = Item(update: update, transmits: 0, order: counter, size: Codec.size(of: update))
        }

        /// Removes any queued update about `subject`.
        mutating func remove(_ subject: Update.Subject) { items[subject] = nil }

        /// Picks updates that fit in `budget` bytes, least-transmitted and newest first; counts a transmission
        /// for each and drops those that reached `limit`. `first` (the buddy system's suspicion) goes first
        /// and is not counted.
        mutating func select(budget: Int, limit: Int, first: Update? = nil) -> [Update] {
            var remaining = budget
            var chosen: [Update] = []
            if let first {
                let size = Codec.size(of: first)
                if size <= remaining {
                    chosen.append(first)
                    remaining -= size
                }
            }
            guard !items.isEmpty, remaining > 0 else { return chosen }
            let ordered = items.values.sorted {
                $0.transmits != $1.transmits ? $0.transmits < $1.transmits : $0.order > $1.order
            }
            for item in ordered {
                if chosen.count == 255 { break }
                guard item.size <= remaining else { continue }
                if let first, item.update == first { continue }
                remaining -= item.size
                chosen.append(item.update)
                let subject = item.update.subject
                if item.transmits + 1 >= limit {
                    items[subject] = nil
                } else {
                    items[subject]!.transmits += 1
                }
                if remaining < 12 { break }
            }
            return chosen
        }
    }
}
