import CInterceptionShim

/// The intercepted thread's memory (process_vm_readv/writev): the sockaddr it passed, the
/// length it offers for the answer. Only read and written while its notification is
/// pending, and written only after checking that it still is.
struct ProgramMemory {
    let pid: Int32

    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        guard address != 0, count > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: count)
        let read = buffer.withUnsafeMutableBytes { vpm_read_memory(pid, address, $0.baseAddress, count) }
        return read == count ? buffer : nil
    }

    func readLength(_ address: UInt64) -> UInt32? {
        guard let bytes = read(address, count: 4) else { return nil }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
    }

    func write(_ bytes: [UInt8], to address: UInt64) -> Bool {
        guard address != 0 else { return false }
        if bytes.isEmpty { return true }
        let written = bytes.withUnsafeBytes { vpm_write_memory(pid, address, $0.baseAddress, bytes.count) }
        return written == bytes.count
    }

    func writeLength(_ value: UInt32, to address: UInt64) -> Bool {
        write(withUnsafeBytes(of: value) { Array($0) }, to: address)
    }
}
