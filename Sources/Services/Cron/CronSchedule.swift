import Foundation

/// When a schedule fires: a 5-field cron expression in a time zone, or a fixed rate.
///
/// Cron expressions are `minute hour day-of-month month day-of-week` with `*`, lists (`1,15`),
/// ranges (`1-5`), steps (`*/10`, `8-18/2`), month and day names (`JAN`, `MON`), day-of-week 0 or 7
/// for Sunday, and the shorthands `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`. When both
/// day-of-month and day-of-week are restricted, either matching fires (as in Vixie cron). Times are
/// wall-clock times of the schedule's time zone: a time skipped by a daylight-saving change does not
/// fire that day, and a time repeated by one fires once.
///
/// `rate(N minute|minutes|hour|hours|day|days)` fires every N units from its anchor (the time the
/// schedule was created).
///
/// Pure: parse once, then ask ``next(after:)``; no clock is read here.
struct CronSchedule: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case cron(minutes: Set<Int>, hours: Set<Int>, days: Set<Int>, months: Set<Int>, weekdays: Set<Int>, anyDay: Bool, anyWeekday: Bool)
        case rate(seconds: Int64)
    }

    let kind: Kind
    let timeZone: TimeZone
    /// Unix milliseconds that rates count from.
    let anchor: Int64

    /// How far ahead ``next(after:)`` looks before it calls an expression one that never fires.
    static let horizonYears = 5

    /// Parses `expression` in `timeZone` (an IANA name such as `Europe/Berlin`; default UTC).
    /// - Throws: ``CronError`` naming the problem, including an expression that never fires.
    init(_ expression: String, timeZone name: String = "UTC", anchor: Int64) throws(CronError) {
        guard let zone = TimeZone(identifier: name) else { throw CronError.invalidTimeZone(name) }
        self.timeZone = zone
        self.anchor = anchor
        let text = expression.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("rate(") {
            self.kind = try Self.rate(text)
        } else {
            self.kind = try Self.cron(text)
            guard self.next(after: anchor) != nil else { throw CronError.neverFires(expression) }
        }
    }

    private static func rate(_ text: String) throws(CronError) -> Kind {
        guard text.hasSuffix(")") else { throw CronError.invalid(text, "rate(...) needs its closing parenthesis") }
        let inner = text.dropFirst(5).dropLast().split(separator: " ")
        guard inner.count == 2, let count = Int64(inner[0]), count >= 1, count <= 100_000 else {
            throw CronError.invalid(text, "rate(N unit) with N from 1")
        }
        let unit: Int64
        switch inner[1] {
        case "minute" where count == 1, "minutes" where count > 1: unit = 60
        case "hour" where count == 1, "hours" where count > 1: unit = 3600
        case "day" where count == 1, "days" where count > 1: unit = 86_400
        default: throw CronError.invalid(text, "the unit is minute(s), hour(s) or day(s), singular for 1 (rate(1 hour), rate(5 minutes))")
        }
        return .rate(seconds: count * unit)
    }

    static let shorthands = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0", "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let dayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    private static func cron(_ text: String) throws(CronError) -> Kind {
        let expanded = Self.shorthands[text.lowercased()] ?? text
        let fields = expanded.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard fields.count == 5 else {
            throw CronError.invalid(text, "a cron expression has 5 fields (minute hour day-of-month month day-of-week); this one has \(fields.count)")
        }
        let minutes = try Self.field(fields[0], 0...59, "minute", names: [])
        let hours = try Self.field(fields[1], 0...23, "hour", names: [])
        let days = try Self.field(fields[2], 1...31, "day-of-month", names: [])
        let months = try Self.field(fields[3], 1...12, "month", names: Self.monthNames, nameBase: 1)
        var weekdays = try Self.field(fields[4], 0...7, "day-of-week", names: Self.dayNames)
        if weekdays.remove(7) != nil { weekdays.insert(0) }
        return .cron(
            minutes: minutes, hours: hours, days: days, months: months, weekdays: weekdays, anyDay: fields[2] == "*" || fields[2] == "?",
            anyWeekday: fields[4] == "*" || fields[4] == "?")
    }

    private static func field(_ text: String, _ range: ClosedRange<Int>, _ name: String, names: [String], nameBase: Int = 0) throws(CronError) -> Set<Int> {
        func value(_ part: Substring) throws(CronError) -> Int {
            if let number = Int(part), range.contains(number) { return number }
            if let index = names.firstIndex(of: part.uppercased()) { return index + nameBase }
            throw CronError.invalid(text, "\(part) is not a \(name) (\(range.lowerBound)-\(range.upperBound)\(names.isEmpty ? "" : " or a name"))")
        }
        var result = Set<Int>()
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let stepParts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard stepParts.count <= 2, !stepParts[0].isEmpty else { throw CronError.invalid(text, "\(item) is not a \(name) item") }
            var step = 1
            if stepParts.count == 2 {
                guard let parsed = Int(stepParts[1]), parsed >= 1, parsed <= range.upperBound else {
                    throw CronError.invalid(text, "the step of \(item) must be 1 to \(range.upperBound)")
                }
                step = parsed
            }
            let bounds: ClosedRange<Int>
            if stepParts[0] == "*" || stepParts[0] == "?" {
                bounds = range
            } else if let dash = stepParts[0].firstIndex(of: "-") {
                let low = try value(stepParts[0][..<dash])
                let high = try value(stepParts[0][stepParts[0].index(after: dash)...])
                guard low <= high else { throw CronError.invalid(text, "the range \(stepParts[0]) runs backwards") }
                bounds = low...high
            } else {
                let single = try value(stepParts[0])
                bounds = single...(stepParts.count == 2 ? range.upperBound : single)
            }
            result.formUnion(stride(from: bounds.lowerBound, through: bounds.upperBound, by: step))
        }
        return result
    }

    /// The first firing time strictly after `time` (unix milliseconds), or nil when there is none
    /// within ``horizonYears``.
    func next(after time: Int64) -> Int64? {
        switch self.kind {
        case .rate(let seconds):
            let period = seconds * 1000
            if time < self.anchor { return self.anchor }
            return self.anchor + ((time - self.anchor) / period + 1) * period
        case .cron(let minutes, let hours, let days, let months, let weekdays, let anyDay, let anyWeekday):
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = self.timeZone
            // From the next whole minute after `time`.
            var date = Date(timeIntervalSince1970: Double((time / 60_000 + 1) * 60))
            let limit = date.addingTimeInterval(Double(Self.horizonYears) * 366 * 86_400)
            func dayMatches(_ c: DateComponents) -> Bool {
                let dayOK = days.contains(c.day!)
                let weekdayOK = weekdays.contains(c.weekday! - 1)
                switch (anyDay, anyWeekday) {
                case (true, true): return true
                case (false, true): return dayOK
                case (true, false): return weekdayOK
                case (false, false): return dayOK || weekdayOK
                }
            }
            while date < limit {
                let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .weekday], from: date)
                if !months.contains(c.month!) {
                    date = calendar.date(from: DateComponents(year: c.year, month: c.month! + 1, day: 1, hour: 0, minute: 0))!
                    continue
                }
                if !dayMatches(c) {
                    date = calendar.date(from: DateComponents(year: c.year, month: c.month, day: c.day! + 1, hour: 0, minute: 0))!
                    continue
                }
                if !hours.contains(c.hour!) {
                    let nextHour = calendar.date(from: DateComponents(year: c.year, month: c.month, day: c.day, hour: c.hour! + 1, minute: 0))!
                    // Across a daylight-saving change the wall clock can repeat an hour: always move forward.
                    date = nextHour > date ? nextHour : date.addingTimeInterval(3600)
                    continue
                }
                if !minutes.contains(c.minute!) {
                    date = date.addingTimeInterval(60)
                    continue
                }
                // The second pass of a wall-clock hour that a daylight-saving change repeats: it fired on the first.
                let hourEarlier = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date.addingTimeInterval(-3600))
                if hourEarlier.year == c.year && hourEarlier.month == c.month && hourEarlier.day == c.day && hourEarlier.hour == c.hour
                    && hourEarlier.minute == c.minute
                {
                    date = date.addingTimeInterval(60)
                    continue
                }
                return Int64(date.timeIntervalSince1970) * 1000
            }
            return nil
        }
    }
}

/// Why a schedule's expression or time zone is refused.
struct CronError: Error, Equatable, CustomStringConvertible {
    let message: String

    static func invalid(_ expression: String, _ reason: String) -> Self { Self(message: "\"\(expression.prefix(100))\": \(reason)") }
    static func neverFires(_ expression: String) -> Self {
        Self(message: "\"\(expression.prefix(100))\" never fires in the next \(CronSchedule.horizonYears) years")
    }
    static func invalidTimeZone(_ name: String) -> Self {
        Self(message: "\"\(name.prefix(60))\" is not a time zone (use an IANA name such as UTC or Europe/Berlin)")
    }

    var description: String { self.message }
}
