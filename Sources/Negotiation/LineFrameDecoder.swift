public import NIOCore

/// Splits a byte stream into lines ending in "\n" (the "\n" is kept), refusing any line
/// longer than `maximumLength` bytes and any bytes left without a "\n" at end of input.
public struct LineFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public enum LineError: Error, Equatable, CustomStringConvertible {
        case tooLong(maximum: Int)
        case truncated(bytes: Int)

        public var description: String {
            switch self {
            case .tooLong(let maximum): "the line is longer than \(maximum) bytes"
            case .truncated(let bytes): "the connection ended after \(bytes) bytes without a newline"
            }
        }
    }

    public let maximumLength: Int
    /// How far the previous calls searched, so each byte is scanned once.
    private var searched = 0

    public init(maximumLength: Int = NegotiationMessage.maximumLineLength) {
        self.maximumLength = maximumLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let line = try nextLine(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        if let line = try nextLine(&buffer) {
            context.fireChannelRead(wrapInboundOut(line))
            return .continue
        }
        try finish(&buffer)
        return .needMoreData
    }

    /// The next complete line, or nil when more bytes are needed.
    public mutating func nextLine(_ buffer: inout ByteBuffer) throws(LineError) -> ByteBuffer? {
        let view = buffer.readableBytesView
        if let index = view.dropFirst(searched).firstIndex(of: UInt8(ascii: "\n")) {
            let length = index - view.startIndex + 1
            guard length <= maximumLength else { throw .tooLong(maximum: maximumLength) }
            searched = 0
            return buffer.readSlice(length: length)!
        }
        searched = view.count
        if view.count >= maximumLength { throw .tooLong(maximum: maximumLength) }
        return nil
    }

    /// At end of input: bytes without a newline are a truncated line.
    public mutating func finish(_ buffer: inout ByteBuffer) throws(LineError) {
        let bytes = buffer.readableBytes
        guard bytes > 0 else { return }
        buffer.moveReaderIndex(forwardBy: bytes)
        searched = 0
        throw .truncated(bytes: bytes)
    }
}
