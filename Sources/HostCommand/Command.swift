public import Foundation

/// What a finished command printed and how it exited.
public struct CommandOutput: Sendable {
    public var status: Int32
    public var standardOutput: String
    public var standardError: String
}

/// Runs control-plane commands (ip, iptables, nft, socat): never on the packet path.
public enum Command {
    /// Runs a command to completion, killing it after `timeout` seconds.
    public static func run(_ arguments: [String], timeout: TimeInterval = 30) throws -> CommandOutput {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes while the command runs, so a chatty command cannot block on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var outputData = Data(), errorData = Data()
        DispatchQueue.global().async(group: group) { outputData = output.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: group) { errorData = error.fileHandleForReading.readDataToEndOfFile() }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        let timedOut = process.isRunning
        if timedOut { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        group.wait()
        if timedOut { throw CommandError.timedOut(arguments.joined(separator: " "), timeout) }
        return CommandOutput(status: process.terminationStatus,
                             standardOutput: String(decoding: outputData, as: UTF8.self),
                             standardError: String(decoding: errorData, as: UTF8.self))
    }

    /// Like `run`, but throws when the command exits non-zero.
    @discardableResult
    public static func checked(_ arguments: [String], timeout: TimeInterval = 30) throws -> CommandOutput {
        let output = try run(arguments, timeout: timeout)
        guard output.status == 0 else {
            throw CommandError.failed(arguments.joined(separator: " "), output.status, output.standardError)
        }
        return output
    }

    /// Whether an executable is on PATH.
    public static func exists(_ name: String) -> Bool {
        (try? run(["sh", "-c", "command -v \(name)"], timeout: 5).status) == 0
    }
}

public enum CommandError: Error, CustomStringConvertible {
    case failed(String, Int32, String)
    case timedOut(String, TimeInterval)

    public var description: String {
        switch self {
        case .failed(let command, let status, let error):
            return "`\(command)` exited with \(status): \(error.trimmingCharacters(in: .whitespacesAndNewlines))"
        case .timedOut(let command, let seconds):
            return "`\(command)` did not finish within \(Int(seconds)) s"
        }
    }
}
