// The key index: open addressing with linear probing over a power-of-two bucket array at
// most half full. A bucket holds 32 bits of the key's hash beside the slot number, so a
// probe compares full keys only on a hash match and deletion can find an entry's home
// bucket without rehashing. Deletion shifts later entries back (Knuth 6.4, algorithm R):
// no tombstones, so the table never degrades or needs a rehash.
extension FlowStore {
    /// 32 bits of a keyed hash of `key`: wyhash-style folded multiplies of the key's five
    /// words with this table's random seeds, about a fifth of the cost of `Hasher` here.
    /// The seeds are secret, so clients cannot aim their ports at one bucket.
    @inline(__always)
    func hash(_ key: FlowKey) -> UInt32 {
        let ports = UInt64(key.clientPort) << 24 | UInt64(key.initialPort) << 8 | UInt64(key.transport.rawValue)
        let client = Self.fold(key.client.high ^ seeds.0, key.client.low ^ seeds.1)
        let server = Self.fold(key.server.high ^ seeds.2, key.server.low ^ seeds.3)
        let mixed = Self.fold(client ^ ports ^ seeds.4, server ^ seeds.5)
        return UInt32(truncatingIfNeeded: mixed ^ mixed >> 32)
    }

    /// The 128-bit product of `a` and `b`, its halves xored.
    @inline(__always)
    static func fold(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    @inline(__always)
    static func bucket(slot: Int32, hash: UInt32) -> UInt64 {
        UInt64(hash) << 32 | UInt64(UInt32(bitPattern: slot) &+ 1)
    }

    /// The slot holding `key`, if any.
    func findSlot(_ key: FlowKey, hash: UInt32) -> Int32? {
        var position = Int(hash) & bucketMask
        while true {
            let bucket = buckets[position]
            if bucket == 0 { return nil }
            if UInt32(truncatingIfNeeded: bucket >> 32) == hash {
                let slot = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: bucket) &- 1)
                if slots[Int(slot)].key == key { return slot }
            }
            position = (position + 1) & bucketMask
        }
    }

    /// Files `slot` (whose key is absent from the index) under `hash`.
    mutating func addToIndex(_ slot: Int32, hash: UInt32) {
        var position = Int(hash) & bucketMask
        while buckets[position] != 0 {
            position = (position + 1) & bucketMask
        }
        buckets[position] = Self.bucket(slot: slot, hash: hash)
    }

    /// Removes `slot`, filed under `hash`, from the index.
    mutating func removeFromIndex(_ slot: Int32, hash: UInt32) {
        let target = Self.bucket(slot: slot, hash: hash)
        var hole = Int(hash) & bucketMask
        while buckets[hole] != target {
            precondition(buckets[hole] != 0, "flow table index lost slot \(slot)")
            hole = (hole + 1) & bucketMask
        }
        // Move back every later entry of the run that may not sit past the hole.
        var position = hole
        while true {
            position = (position + 1) & bucketMask
            let bucket = buckets[position]
            if bucket == 0 { break }
            let home = Int(truncatingIfNeeded: bucket >> 32) & bucketMask
            // The entry stays if its home lies cyclically in (hole, position].
            let stays = hole <= position
                ? (hole < home && home <= position)
                : (hole < home || home <= position)
            if !stays {
                buckets[hole] = bucket
                hole = position
            }
        }
        buckets[hole] = 0
    }
}
