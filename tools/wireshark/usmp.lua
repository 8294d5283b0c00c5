--[[
usmp.lua - Wireshark dissector for USMP v1 (spec/protocol.md).

Three entry points, one per capture form (docs/wireshark.md):
  usmp        stream mode over TCP (section 5.1), frames reassembled across
              segments; TCP port 9000 by default (preference "tcp_port",
              Decode As for others)
  usmp_dgram  datagram mode over UDP (section 5.2), one frame per datagram;
              UDP port 9000 by default (preference "udp_port", Decode As)
  usmp_cobs   datagram mode over a serial line (section 10): a capture of
              the line's bytes, COBS(frame) || 00 each, in a pcap of link
              type USER0 (DLT 147) mapped with the user_dlts table

Records (types 0x05-0x09 and CONTROL 0x0B, whose OTA channel is decoded
after spec/ota.md) are AES-256-GCM protected (section 6.1). With a
key log (preference "keylog_file", or the USMP_KEYLOG_FILE environment
variable) the dissector opens them and shows their plaintext. Wireshark 4.0's
Lua has no cipher binding (GcryptCipher arrived in later releases), so the
AES-256-GCM below is written in plain Lua 5.2 over bit32; it is slow, but a
debugging capture is small.

Key log format, one line per session, written by the C and Python
implementations when USMP_KEYLOG_FILE is set (docs/wireshark.md):
  USMP_SESSION <session_id: 16 hex> <k_c2s: 64 hex> <k_s2c: 64 hex>
Lines starting with '#' and lines of another form are ignored.

Install: copy this file into Wireshark's personal Lua plugin folder
(Help > About > Folders), or run tshark -X lua_script:usmp.lua.
]]

local usmp = Proto("usmp", "USMP v1 (stream)")
local usmp_dgram = Proto("usmp_dgram", "USMP v1 (datagram)")
local usmp_cobs = Proto("usmp_cobs", "USMP v1 serial line (COBS)")

--------------------------------------------------------------------------
-- Protocol constants (spec/protocol.md)
--------------------------------------------------------------------------

local T_HELLO, T_CHALLENGE, T_HELLO_ACK, T_SESSION_OK = 0x01, 0x02, 0x03, 0x04
local T_DATA, T_PING, T_PONG, T_BYE, T_DATA_FRAGMENT = 0x05, 0x06, 0x07, 0x08, 0x09
local T_COOKIE, T_CONTROL, T_ERROR = 0x0A, 0x0B, 0xFF

-- Section 2, frame types.
local type_names = {
    [T_HELLO] = "HELLO", [T_CHALLENGE] = "CHALLENGE", [T_HELLO_ACK] = "HELLO_ACK",
    [T_SESSION_OK] = "SESSION_OK", [T_DATA] = "DATA", [T_PING] = "PING", [T_PONG] = "PONG",
    [T_BYE] = "BYE", [T_DATA_FRAGMENT] = "DATA_FRAGMENT", [T_COOKIE] = "COOKIE",
    [T_CONTROL] = "CONTROL", [T_ERROR] = "ERROR",
}

-- Section 9.1, the codes carried by ERROR and BYE.
local code_names = {
    [0x00] = "NONE", [0x01] = "MALFORMED", [0x02] = "UNEXPECTED",
    [0x03] = "UNSUPPORTED_VERSION", [0x04] = "UNSUPPORTED_SUITE", [0x05] = "AUTH_FAILED",
    [0x06] = "BAD_KEY", [0x07] = "BUSY", [0x08] = "TOO_LARGE", [0x09] = "BAD_RECORD",
    [0x0A] = "KEY_LIMIT", [0x0B] = "IDLE_TIMEOUT", [0x0C] = "REKEY", [0x0D] = "SHUTDOWN",
    [0x0E] = "REPLACED",
}

local STREAM_HEADER, DATAGRAM_HEADER, TAG_BYTES = 3, 9, 16
local SESSION_ID_BYTES, SESSION_INDEX_BYTES = 8, 3
local PING_MAX = 8 -- section 6.3

-- Section 4, handshake bodies. A datagram HELLO is 60 bytes when it
-- answers a COOKIE (4.1); COOKIE exists in datagram mode only (8.3).
local handshake_body = {
    [T_HELLO] = 44, [T_CHALLENGE] = 54, [T_HELLO_ACK] = 16, [T_SESSION_OK] = 24,
    [T_ERROR] = 1, [T_COOKIE] = 16,
}
local HELLO_WITH_COOKIE_BODY = 60

-- Section 6.7: CONTROL records and their channels.
local CHANNEL_OTA = 0x01
local channel_names = { [0x00] = "reserved", [CHANNEL_OTA] = "OTA" }

-- spec/ota.md section 3: the OTA channel's messages, their body lengths
-- (op included; CHUNK: at least) and RESULT codes.
local OTA_STATUS, OTA_OFFER, OTA_REQUEST, OTA_CHUNK, OTA_RESULT = 0x01, 0x02, 0x03, 0x04, 0x05
local ota_op_names = {
    [OTA_STATUS] = "STATUS", [OTA_OFFER] = "OFFER", [OTA_REQUEST] = "REQUEST",
    [OTA_CHUNK] = "CHUNK", [OTA_RESULT] = "RESULT",
}
local ota_body_len = { [OTA_STATUS] = 60, [OTA_OFFER] = 125, [OTA_REQUEST] = 7, [OTA_CHUNK] = 6, [OTA_RESULT] = 6 }
local ota_result_names = {
    [0x00] = "ACTIVATED", [0x01] = "BAD_SIGNATURE", [0x02] = "WRONG_HARDWARE", [0x03] = "NOT_NEWER",
    [0x04] = "HASH_MISMATCH", [0x05] = "FLASH_ERROR", [0x06] = "TOO_LARGE", [0x07] = "MALFORMED",
}
local ota_state_names = { [0] = "idle", [1] = "receiving" }

local function is_record(t) return (t >= T_DATA and t <= T_DATA_FRAGMENT) or t == T_CONTROL end

--------------------------------------------------------------------------
-- Fields
--------------------------------------------------------------------------

local f = {
    type = ProtoField.uint8("usmp.type", "Type", base.HEX, type_names),
    length = ProtoField.uint16("usmp.length", "Length", base.DEC),
    session_index = ProtoField.uint24("usmp.session_index", "Session index", base.HEX),
    seq = ProtoField.uint64("usmp.seq", "Sequence number", base.DEC),
    -- HELLO (4.1)
    versions = ProtoField.uint8("usmp.hello.versions", "Versions offered", base.HEX),
    suites = ProtoField.uint8("usmp.hello.suites", "Suites offered", base.HEX),
    device_id = ProtoField.ether("usmp.hello.device_id", "Device id"),
    e_c = ProtoField.bytes("usmp.hello.e_c", "Client ephemeral key (e_C)"),
    hello_max_record = ProtoField.uint16("usmp.hello.max_record", "Client max_record", base.DEC),
    hello_max_message = ProtoField.uint16("usmp.hello.max_message", "Client max_message", base.DEC),
    hello_cookie = ProtoField.bytes("usmp.hello.cookie", "Cookie"),
    -- CHALLENGE (4.2)
    version = ProtoField.uint8("usmp.challenge.version", "Version", base.DEC),
    suite = ProtoField.uint8("usmp.challenge.suite", "Suite", base.DEC),
    nonce = ProtoField.bytes("usmp.challenge.nonce", "Server nonce"),
    e_s = ProtoField.bytes("usmp.challenge.e_s", "Server ephemeral key (e_S)"),
    challenge_max_record = ProtoField.uint16("usmp.challenge.max_record", "Server max_record", base.DEC),
    challenge_max_message = ProtoField.uint16("usmp.challenge.max_message", "Server max_message", base.DEC),
    -- HELLO_ACK (4.3), SESSION_OK (4.4), COOKIE (8.3), ERROR (9.2)
    hello_ack_mac = ProtoField.bytes("usmp.hello_ack.mac", "Client key confirmation MAC"),
    session_id = ProtoField.bytes("usmp.session_ok.session_id", "Session id"),
    session_ok_mac = ProtoField.bytes("usmp.session_ok.mac", "Server key confirmation MAC"),
    cookie = ProtoField.bytes("usmp.cookie", "Cookie"),
    error_code = ProtoField.uint8("usmp.error.code", "Error code", base.HEX, code_names),
    -- Records (6)
    ciphertext = ProtoField.bytes("usmp.record.ciphertext", "Ciphertext"),
    tag = ProtoField.bytes("usmp.record.tag", "GCM tag"),
    plaintext_length = ProtoField.uint16("usmp.record.plaintext_length", "Plaintext length", base.DEC),
    counter = ProtoField.uint64("usmp.record.counter", "Record counter", base.DEC),
    direction = ProtoField.string("usmp.record.direction", "Direction"),
    record_session_id = ProtoField.string("usmp.record.session_id", "Session id (from the key log)"),
    plaintext = ProtoField.bytes("usmp.plaintext", "Plaintext"),
    bye_reason = ProtoField.uint8("usmp.bye.reason", "BYE reason", base.HEX, code_names),
    ping_payload = ProtoField.bytes("usmp.ping.payload", "PING/PONG payload"),
    fragment_total = ProtoField.uint16("usmp.fragment.total", "Message total length", base.DEC),
    fragment_offset = ProtoField.uint16("usmp.fragment.offset", "Chunk offset", base.DEC),
    fragment_chunk = ProtoField.bytes("usmp.fragment.chunk", "Chunk"),
    control_channel = ProtoField.uint8("usmp.control.channel", "Control channel", base.HEX, channel_names),
    control_body = ProtoField.bytes("usmp.control.body", "Control body"),
    -- OTA channel (spec/ota.md)
    ota_op = ProtoField.uint8("usmp.ota.op", "OTA op", base.HEX, ota_op_names),
    ota_fw_version = ProtoField.uint32("usmp.ota.fw_version", "Running firmware version", base.DEC),
    ota_hardware_id = ProtoField.bytes("usmp.ota.hardware_id", "Hardware id"),
    ota_state = ProtoField.uint8("usmp.ota.state", "State", base.DEC, ota_state_names),
    ota_manifest_digest = ProtoField.bytes("usmp.ota.manifest_digest", "Manifest digest"),
    ota_next_offset = ProtoField.uint32("usmp.ota.next_offset", "Next offset", base.DEC),
    ota_max_chunk = ProtoField.uint16("usmp.ota.max_chunk", "Largest chunk", base.DEC),
    ota_offset = ProtoField.uint32("usmp.ota.offset", "Offset", base.DEC),
    ota_length = ProtoField.uint16("usmp.ota.length", "Length", base.DEC),
    ota_data = ProtoField.bytes("usmp.ota.data", "Image bytes"),
    ota_result = ProtoField.uint8("usmp.ota.result", "Result", base.HEX, ota_result_names),
    manifest = ProtoField.bytes("usmp.ota.manifest", "Manifest"),
    manifest_format = ProtoField.uint8("usmp.ota.manifest.format", "Format", base.DEC),
    manifest_image_size = ProtoField.uint32("usmp.ota.manifest.image_size", "Image size", base.DEC),
    manifest_version = ProtoField.uint32("usmp.ota.manifest.firmware_version", "Firmware version", base.DEC),
    manifest_hardware_id = ProtoField.bytes("usmp.ota.manifest.hardware_id", "Hardware id"),
    manifest_sha256 = ProtoField.bytes("usmp.ota.manifest.image_sha256", "Image SHA-256"),
    manifest_signature = ProtoField.bytes("usmp.ota.manifest.signature", "Ed25519 signature"),
    -- COBS (10)
    cobs_encoded = ProtoField.bytes("usmp_cobs.encoded", "COBS-encoded frame"),
    cobs_length = ProtoField.uint16("usmp_cobs.decoded_length", "Decoded length", base.DEC),
}
usmp.fields = f

local e = {
    bad_length = ProtoExpert.new("usmp.bad_length", "Frame length is wrong for its type",
                                 expert.group.MALFORMED, expert.severity.ERROR),
    unknown_type = ProtoExpert.new("usmp.unknown_type", "Undefined frame type",
                                   expert.group.MALFORMED, expert.severity.ERROR),
    truncated = ProtoExpert.new("usmp.truncated", "Frame truncated",
                                expert.group.MALFORMED, expert.severity.ERROR),
    bad_mode = ProtoExpert.new("usmp.bad_mode", "Frame type not allowed in this mode",
                               expert.group.PROTOCOL, expert.severity.ERROR),
    bad_payload = ProtoExpert.new("usmp.bad_payload", "Record payload invalid for its type",
                                  expert.group.MALFORMED, expert.severity.ERROR),
    bad_ota = ProtoExpert.new("usmp.ota.malformed", "Malformed OTA message (spec/ota.md 3.6)",
                              expert.group.MALFORMED, expert.severity.WARN),
    bad_tag = ProtoExpert.new("usmp.bad_tag", "Record does not decrypt with the logged keys",
                              expert.group.DECRYPTION, expert.severity.WARN),
    no_key = ProtoExpert.new("usmp.no_key", "Record not decrypted: no key for its session",
                             expert.group.DECRYPTION, expert.severity.NOTE),
    bad_cobs = ProtoExpert.new("usmp_cobs.bad_encoding", "Invalid COBS encoding",
                               expert.group.MALFORMED, expert.severity.ERROR),
    cobs_unterminated = ProtoExpert.new("usmp_cobs.unterminated", "COBS frame without its 00 delimiter",
                                        expert.group.MALFORMED, expert.severity.WARN),
}
usmp.experts = e

usmp.prefs.tcp_port = Pref.uint("TCP port", 9000, "TCP port of the stream-mode gateway (0: none)")
usmp.prefs.udp_port = Pref.uint("UDP port", 9000, "UDP port of the datagram-mode gateway (0: none)")
usmp.prefs.keylog_file = Pref.string("Key log file", "",
    "File of USMP_SESSION lines written by an implementation with USMP_KEYLOG_FILE set. "
    .. "Whoever holds it can read every logged session: keep it off shared storage and delete it after use. "
    .. "Empty: the USMP_KEYLOG_FILE environment variable, if set.")

--------------------------------------------------------------------------
-- AES-256-GCM (NIST SP 800-38D), decryption and tag check only.
-- Bytes are Lua strings; words are 32-bit numbers handled with bit32.
--------------------------------------------------------------------------

local band, bxor, bor, rshift, lshift = bit32.band, bit32.bxor, bit32.bor, bit32.rshift, bit32.lshift

-- The S-box, computed from its definition (FIPS-197 5.1.1): the inverse in
-- GF(2^8) followed by the affine map.
local sbox = {}
do
    local function gmul(a, b)
        local p = 0
        for _ = 1, 8 do
            if band(b, 1) ~= 0 then p = bxor(p, a) end
            local hi = band(a, 0x80)
            a = band(lshift(a, 1), 0xFF)
            if hi ~= 0 then a = bxor(a, 0x1B) end
            b = rshift(b, 1)
        end
        return p
    end
    local inverse = { [0] = 0 }
    for a = 1, 255 do
        for b = 1, 255 do
            if gmul(a, b) == 1 then inverse[a] = b; break end
        end
    end
    local function rotl8(x, n) return band(bor(lshift(x, n), rshift(x, 8 - n)), 0xFF) end
    for a = 0, 255 do
        local x = inverse[a]
        sbox[a] = bxor(x, rotl8(x, 1), rotl8(x, 2), rotl8(x, 3), rotl8(x, 4), 0x63)
    end
end

local function xtime(a)
    a = lshift(a, 1)
    if a >= 0x100 then a = bxor(a, 0x11B) end
    return a
end

-- Key expansion for a 32-byte key: 15 round keys of 16 bytes (FIPS-197 5.2).
local function aes256_expand(key)
    local w = {}
    for i = 0, 31 do w[i] = key:byte(i + 1) end
    local rcon = 1
    for i = 32, 239, 4 do
        local t0, t1, t2, t3 = w[i - 4], w[i - 3], w[i - 2], w[i - 1]
        if i % 32 == 0 then
            t0, t1, t2, t3 = bxor(sbox[t1], rcon), sbox[t2], sbox[t3], sbox[t0]
            rcon = xtime(rcon)
        elseif i % 32 == 16 then
            t0, t1, t2, t3 = sbox[t0], sbox[t1], sbox[t2], sbox[t3]
        end
        w[i], w[i + 1], w[i + 2], w[i + 3] =
            bxor(w[i - 32], t0), bxor(w[i - 31], t1), bxor(w[i - 30], t2), bxor(w[i - 29], t3)
    end
    return w
end

-- Encrypts one block (a table of 16 bytes, indices 0..15) in place.
local function aes256_encrypt_block(w, s)
    for i = 0, 15 do s[i] = bxor(s[i], w[i]) end
    for round = 1, 14 do
        -- SubBytes and ShiftRows: byte (row r, column c) is s[4c + r].
        local t = {}
        for c = 0, 3 do
            for r = 0, 3 do
                t[4 * c + r] = sbox[s[4 * ((c + r) % 4) + r]]
            end
        end
        if round < 14 then -- MixColumns, every round but the last
            for c = 0, 3 do
                local a0, a1, a2, a3 = t[4 * c], t[4 * c + 1], t[4 * c + 2], t[4 * c + 3]
                local all = bxor(a0, a1, a2, a3)
                t[4 * c] = bxor(a0, all, xtime(bxor(a0, a1)))
                t[4 * c + 1] = bxor(a1, all, xtime(bxor(a1, a2)))
                t[4 * c + 2] = bxor(a2, all, xtime(bxor(a2, a3)))
                t[4 * c + 3] = bxor(a3, all, xtime(bxor(a3, a0)))
            end
        end
        local k = 16 * round
        for i = 0, 15 do s[i] = bxor(t[i], w[k + i]) end
    end
end

local function block_of(str, pos)
    local b = {}
    for i = 0, 15 do b[i] = str:byte(pos + i) or 0 end
    return b
end

local function words_of(b)
    local x = {}
    for j = 0, 3 do
        x[j + 1] = bor(lshift(b[4 * j], 24), lshift(b[4 * j + 1], 16), lshift(b[4 * j + 2], 8), b[4 * j + 3])
    end
    return x
end

-- X * H in GF(2^128) with GCM's bit order (SP 800-38D 6.3, algorithm 1).
local function gf_mul(x, h)
    local z1, z2, z3, z4 = 0, 0, 0, 0
    local v1, v2, v3, v4 = h[1], h[2], h[3], h[4]
    for i = 0, 127 do
        local word = x[rshift(i, 5) + 1]
        if band(word, lshift(1, 31 - i % 32)) ~= 0 then
            z1, z2, z3, z4 = bxor(z1, v1), bxor(z2, v2), bxor(z3, v3), bxor(z4, v4)
        end
        local lsb = band(v4, 1)
        v4 = bor(rshift(v4, 1), lshift(band(v3, 1), 31))
        v3 = bor(rshift(v3, 1), lshift(band(v2, 1), 31))
        v2 = bor(rshift(v2, 1), lshift(band(v1, 1), 31))
        v1 = rshift(v1, 1)
        if lsb ~= 0 then v1 = bxor(v1, 0xE1000000) end
    end
    return { z1, z2, z3, z4 }
end

local function ghash_update(y, h, str)
    for pos = 1, #str, 16 do
        local x = words_of(block_of(str, pos))
        y = gf_mul({ bxor(y[1], x[1]), bxor(y[2], x[2]), bxor(y[3], x[3]), bxor(y[4], x[4]) }, h)
    end
    return y
end

local function u64_bytes(n)
    local out = {}
    for i = 8, 1, -1 do
        out[i] = string.char(n % 256)
        n = math.floor(n / 256)
    end
    return table.concat(out)
end

-- Returns the plaintext, or nil when the tag does not verify.
local function aes256_gcm_open(key, nonce12, aad, sealed)
    if #sealed < TAG_BYTES then return nil end
    local ciphertext, tag = sealed:sub(1, #sealed - TAG_BYTES), sealed:sub(#sealed - TAG_BYTES + 1)
    local w = aes256_expand(key)
    local zero = block_of(string.rep("\0", 16), 1)
    aes256_encrypt_block(w, zero)
    local h = words_of(zero)

    local y = ghash_update({ 0, 0, 0, 0 }, h, aad)
    y = ghash_update(y, h, ciphertext)
    y = ghash_update(y, h, u64_bytes(#aad * 8) .. u64_bytes(#ciphertext * 8))

    local j0 = block_of(nonce12 .. "\0\0\0\1", 1)
    aes256_encrypt_block(w, j0)
    local expected = {}
    for j = 1, 4 do
        for k = 3, 0, -1 do
            expected[#expected + 1] = string.char(bxor(band(rshift(y[j], 8 * k), 0xFF), j0[4 * (j - 1) + 3 - k]))
        end
    end
    -- Not constant time: this runs on a capture, not on a live peer.
    if table.concat(expected) ~= tag then return nil end

    local out = {}
    local counter = 2
    for pos = 1, #ciphertext, 16 do
        local block = block_of(nonce12 .. string.char(
            band(rshift(counter, 24), 0xFF), band(rshift(counter, 16), 0xFF),
            band(rshift(counter, 8), 0xFF), band(counter, 0xFF)), 1)
        aes256_encrypt_block(w, block)
        for i = 0, math.min(15, #ciphertext - pos) do
            out[#out + 1] = string.char(bxor(ciphertext:byte(pos + i), block[i]))
        end
        counter = counter + 1
    end
    return table.concat(out)
end

--------------------------------------------------------------------------
-- Key log
--------------------------------------------------------------------------

local keylog = { path = nil, size = -1, by_session = {}, by_index = {} }

local function unhex(s)
    return (s:gsub("..", function(pair) return string.char(tonumber(pair, 16)) end))
end

-- (Re)reads the key log when its path or size changed, so that sessions
-- logged while the capture runs are found without restarting Wireshark.
local function keylog_refresh()
    local path = usmp.prefs.keylog_file
    if path == nil or path == "" then path = os.getenv("USMP_KEYLOG_FILE") end
    if path == nil or path == "" then return end
    local file = io.open(path, "rb")
    if file == nil then return end
    local size = file:seek("end")
    if path == keylog.path and size == keylog.size then file:close(); return end
    file:seek("set", 0)
    keylog.path, keylog.size, keylog.by_session, keylog.by_index = path, size, {}, {}
    for line in file:lines() do
        local sid, c2s, s2c = line:match("^USMP_SESSION%s+(%x+)%s+(%x+)%s+(%x+)%s*$")
        if sid ~= nil and #sid == 16 and #c2s == 64 and #s2c == 64 then
            local entry = { session_id = unhex(sid:lower()), c2s = unhex(c2s), s2c = unhex(s2c) }
            keylog.by_session[entry.session_id] = entry
            local index = entry.session_id:sub(1, SESSION_INDEX_BYTES)
            keylog.by_index[index] = keylog.by_index[index] or {}
            table.insert(keylog.by_index[index], entry)
        end
    end
    file:close()
end

local function keys_for_session(session_id)
    keylog_refresh()
    return keylog.by_session[session_id]
end

local function keys_for_index(index)
    keylog_refresh()
    return keylog.by_index[index] or {}
end

--------------------------------------------------------------------------
-- Helpers shared by both modes
--------------------------------------------------------------------------

local function type_label(t)
    return type_names[t] or string.format("unknown type 0x%02x", t)
end

local function code_label(c)
    return code_names[c] or string.format("0x%02x (undefined in v1)", c)
end

local function append_info(pinfo, text)
    local current = tostring(pinfo.cols.info)
    if current == "" then pinfo.cols.info:set(text) else pinfo.cols.info:append(", " .. text) end
end

local function nonce_for(counter)
    return "\0\0\0\0" .. u64_bytes(counter)
end

-- Handshake bodies (section 4). `body` is a TvbRange of exactly the body.
local function dissect_handshake_body(t, body, tree, pinfo)
    local len = body:len()
    if t == T_HELLO then
        tree:add(f.versions, body(0, 1))
        tree:add(f.suites, body(1, 1))
        tree:add(f.device_id, body(2, 6))
        tree:add(f.e_c, body(8, 32))
        tree:add(f.hello_max_record, body(40, 2))
        tree:add(f.hello_max_message, body(42, 2))
        if len == HELLO_WITH_COOKIE_BODY then tree:add(f.hello_cookie, body(44, 16)) end
        return "device " .. tostring(body(2, 6):ether())
    elseif t == T_CHALLENGE then
        tree:add(f.version, body(0, 1))
        tree:add(f.suite, body(1, 1))
        tree:add(f.nonce, body(2, 16))
        tree:add(f.e_s, body(18, 32))
        tree:add(f.challenge_max_record, body(50, 2))
        tree:add(f.challenge_max_message, body(52, 2))
        return string.format("version %d suite %d", body(0, 1):uint(), body(1, 1):uint())
    elseif t == T_HELLO_ACK then
        tree:add(f.hello_ack_mac, body(0, 16))
    elseif t == T_SESSION_OK then
        tree:add(f.session_id, body(0, 8))
        tree:add(f.session_ok_mac, body(8, 16))
        return "session " .. body(0, 8):bytes():tohex():lower()
    elseif t == T_COOKIE then
        tree:add(f.cookie, body(0, 16))
    elseif t == T_ERROR then
        tree:add(f.error_code, body(0, 1))
        return code_label(body(0, 1):uint())
    end
    return nil
end

-- Whether `len` is a valid body length for handshake type t in the mode.
local function handshake_length_ok(t, len, datagram)
    if t == T_HELLO and datagram and len == HELLO_WITH_COOKIE_BODY then return true end
    return handshake_body[t] == len
end

-- An OTA message (spec/ota.md section 3); `b` is the Tvb of the body
-- (op and fields). Returns the Info summary.
local function dissect_ota(b, tree)
    local n = b:len()
    local op = b(0, 1):uint()
    tree:add(f.ota_op, b(0, 1))
    local name = ota_op_names[op]
    if name == nil then
        tree:add_proto_expert_info(e.bad_ota, string.format("Unknown OTA op 0x%02x", op))
        return string.format("OTA op 0x%02x", op)
    end
    local want = ota_body_len[op]
    if (op == OTA_CHUNK and n < want) or (op ~= OTA_CHUNK and n ~= want) then
        tree:add_proto_expert_info(e.bad_ota, string.format("OTA %s body of %d bytes, expected %s%d",
                                                            name, n, op == OTA_CHUNK and "at least " or "", want))
        return "OTA " .. name .. " (malformed)"
    end
    if op == OTA_STATUS then
        tree:add(f.ota_fw_version, b(1, 4))
        tree:add(f.ota_hardware_id, b(5, 16))
        local state = tree:add(f.ota_state, b(21, 1))
        if b(21, 1):uint() > 1 then state:add_proto_expert_info(e.bad_ota, "STATUS state other than 0 or 1") end
        tree:add(f.ota_manifest_digest, b(22, 32))
        tree:add(f.ota_next_offset, b(54, 4))
        tree:add(f.ota_max_chunk, b(58, 2))
        return string.format("OTA STATUS version %d, %s", b(1, 4):uint(),
                             ota_state_names[b(21, 1):uint()] or "bad state")
    elseif op == OTA_OFFER then
        local m = tree:add(f.manifest, b(1, 124))
        m:add(f.manifest_format, b(1, 1))
        m:add(f.manifest_image_size, b(5, 4))
        m:add(f.manifest_version, b(9, 4))
        m:add(f.manifest_hardware_id, b(13, 16))
        m:add(f.manifest_sha256, b(29, 32))
        m:add(f.manifest_signature, b(61, 64))
        return string.format("OTA OFFER version %d, %d bytes", b(9, 4):uint(), b(5, 4):uint())
    elseif op == OTA_REQUEST then
        tree:add(f.ota_offset, b(1, 4))
        local length = tree:add(f.ota_length, b(5, 2))
        if b(5, 2):uint() == 0 then length:add_proto_expert_info(e.bad_ota, "REQUEST of length 0") end
        return string.format("OTA REQUEST offset %d length %d", b(1, 4):uint(), b(5, 2):uint())
    elseif op == OTA_CHUNK then
        tree:add(f.ota_offset, b(1, 4))
        tree:add(f.ota_data, b(5))
        return string.format("OTA CHUNK offset %d, %d bytes", b(1, 4):uint(), n - 5)
    else
        tree:add(f.ota_result, b(1, 1))
        tree:add(f.ota_fw_version, b(2, 4))
        local code = b(1, 1):uint()
        return "OTA RESULT " .. (ota_result_names[code] or string.format("0x%02x (reserved)", code))
    end
end

-- The plaintext of an opened record (section 6.3, 6.4).
local function dissect_plaintext(t, plaintext, tree, pinfo)
    local ptvb = ByteArray.new(plaintext, true):tvb("USMP plaintext")
    local n = ptvb:len()
    local pt = tree:add(f.plaintext, ptvb())
    if t == T_DATA then
        return string.format("%d bytes", n)
    elseif t == T_PING or t == T_PONG then
        if n > 0 then pt:add(f.ping_payload, ptvb()) end
        if n > PING_MAX then pt:add_proto_expert_info(e.bad_payload, "PING/PONG payload over 8 bytes") end
    elseif t == T_BYE then
        if n ~= 1 then
            pt:add_proto_expert_info(e.bad_payload, "BYE payload is not exactly 1 byte")
            return nil
        end
        pt:add(f.bye_reason, ptvb(0, 1))
        return "reason " .. code_label(ptvb(0, 1):uint())
    elseif t == T_DATA_FRAGMENT then
        if n < 4 then
            pt:add_proto_expert_info(e.bad_payload, "DATA_FRAGMENT shorter than its 4-byte header")
            return nil
        end
        pt:add(f.fragment_total, ptvb(0, 2))
        pt:add(f.fragment_offset, ptvb(2, 2))
        if n > 4 then pt:add(f.fragment_chunk, ptvb(4)) else
            pt:add_proto_expert_info(e.bad_payload, "DATA_FRAGMENT with an empty chunk")
        end
        return string.format("offset %d of %d", ptvb(2, 2):uint(), ptvb(0, 2):uint())
    elseif t == T_CONTROL then
        -- Section 6.7: channel || body, 1 ... max_record bytes.
        if n < 1 then
            pt:add_proto_expert_info(e.bad_payload, "CONTROL record with an empty plaintext")
            return nil
        end
        pt:add(f.control_channel, ptvb(0, 1))
        local channel = ptvb(0, 1):uint()
        if n > 1 then pt:add(f.control_body, ptvb(1)) end
        if channel == CHANNEL_OTA then
            if n == 1 then
                pt:add_proto_expert_info(e.bad_ota, "Empty OTA message")
                return "OTA (empty)"
            end
            return dissect_ota(ptvb(1):tvb(), pt)
        end
        return string.format("channel 0x%02x, %d bytes", channel, n - 1)
    end
    return nil
end

-- Adds the record's sealed part; `opened` is nil, or { plaintext, counter,
-- direction, session_id }.
local function add_record(t, header, sealed, tree, pinfo, opened, why_not)
    local n = sealed:len()
    tree:add(f.plaintext_length, header, n - TAG_BYTES):set_generated()
    if n > TAG_BYTES then tree:add(f.ciphertext, sealed(0, n - TAG_BYTES)) end
    tree:add(f.tag, sealed(n - TAG_BYTES, TAG_BYTES))
    if opened == nil then
        if why_not == "bad_tag" then
            tree:add_proto_expert_info(e.bad_tag)
        elseif why_not == "no_key" then
            tree:add_proto_expert_info(e.no_key)
        end
        return nil
    end
    tree:add(f.record_session_id, header, ByteArray.new(opened.session_id, true):tohex():lower()):set_generated()
    tree:add(f.direction, header, opened.direction):set_generated()
    tree:add(f.counter, header, UInt64.new(opened.counter % 4294967296,
                                           math.floor(opened.counter / 4294967296))):set_generated()
    return dissect_plaintext(t, opened.plaintext, tree, pinfo)
end

--------------------------------------------------------------------------
-- Stream mode over TCP (sections 5.1, 6.2)
--------------------------------------------------------------------------

-- Per TCP connection: the client's endpoint (from HELLO), the session id
-- (from SESSION_OK) and the number of records seen each way since; the
-- counters are implicit in stream mode, so they are counted on the first
-- pass and remembered per PDU for later passes.
local stream_conns = {}
local stream_pdu_counter = {} -- "frame:call:pdu" -> counter
local stream_pdu_opened = {}
local last_frame, call_in_frame = -1, 0

local function endpoint(addr, port) return tostring(addr) .. "|" .. tostring(port) end

local function stream_conn(pinfo)
    local a, b = endpoint(pinfo.src, pinfo.src_port), endpoint(pinfo.dst, pinfo.dst_port)
    local key = a < b and (a .. "-" .. b) or (b .. "-" .. a)
    local conn = stream_conns[key]
    if conn == nil then
        conn = { client = nil, session_id = nil, next = {} }
        stream_conns[key] = conn
    end
    return conn, a
end

local function stream_direction(conn, src, pinfo)
    if conn.client ~= nil then return src == conn.client and "c2s" or "s2c" end
    return pinfo.src_port == usmp.prefs.tcp_port and "s2c" or "c2s"
end

local function open_stream_record(pinfo, header_bytes, sealed_bytes, pdu_key)
    local conn, src = stream_conn(pinfo)
    local direction = stream_direction(conn, src, pinfo)
    local counter
    if not pinfo.visited then
        if conn.session_id ~= nil then
            counter = conn.next[direction] or 0
            conn.next[direction] = counter + 1
            stream_pdu_counter[pdu_key] = counter
        end
    else
        counter = stream_pdu_counter[pdu_key]
    end
    if counter == nil or conn.session_id == nil then return nil, "no_key" end
    local cached = stream_pdu_opened[pdu_key]
    if cached ~= nil then return cached end
    local keys = keys_for_session(conn.session_id)
    if keys == nil then return nil, "no_key" end
    local plaintext = aes256_gcm_open(keys[direction], nonce_for(counter), header_bytes, sealed_bytes)
    if plaintext == nil then return nil, "bad_tag" end
    local opened = { plaintext = plaintext, counter = counter, direction = direction,
                     session_id = conn.session_id }
    stream_pdu_opened[pdu_key] = opened
    return opened
end

-- One stream frame of `len` bytes at `offset`. Returns nothing.
local function dissect_stream_frame(tvb, offset, pinfo, root, pdu_key)
    local t = tvb(offset, 1):uint()
    local body_len = tvb(offset + 1, 2):uint()
    local frame = tvb(offset, STREAM_HEADER + body_len)
    local tree = root:add(usmp, frame, "USMP " .. type_label(t))
    tree:add(f.type, tvb(offset, 1))
    tree:add(f.length, tvb(offset + 1, 2))
    local body = body_len > 0 and tvb(offset + STREAM_HEADER, body_len) or nil
    local summary

    if type_names[t] == nil then
        tree:add_proto_expert_info(e.unknown_type, string.format("Undefined frame type 0x%02x", t))
    elseif t == T_COOKIE then
        tree:add_proto_expert_info(e.bad_mode, "COOKIE is sent in datagram mode only (section 8.3)")
    elseif is_record(t) then
        if body_len < TAG_BYTES then
            tree:add_proto_expert_info(e.bad_length, string.format("Record of %d bytes, shorter than its 16-byte tag", body_len))
        else
            local opened, why = open_stream_record(pinfo, tvb(offset, STREAM_HEADER):raw(), body:raw(), pdu_key)
            summary = add_record(t, tvb(offset, STREAM_HEADER), body, tree, pinfo, opened, why)
        end
    elseif not handshake_length_ok(t, body_len, false) then
        tree:add_proto_expert_info(e.bad_length, string.format("%s body of %d bytes, expected %d",
                                                               type_label(t), body_len, handshake_body[t]))
    else
        summary = dissect_handshake_body(t, body, tree, pinfo)
        if not pinfo.visited then
            local conn, src = stream_conn(pinfo)
            if t == T_HELLO then
                conn.client, conn.session_id, conn.next = src, nil, {}
            elseif t == T_SESSION_OK then
                conn.session_id, conn.next = body(0, 8):raw(), {}
            end
        end
    end
    append_info(pinfo, type_label(t) .. (summary and (" (" .. summary .. ")") or ""))
end

function usmp.dissector(tvb, pinfo, root)
    pinfo.cols.protocol:set("USMP")
    if pinfo.number ~= last_frame then
        last_frame, call_in_frame = pinfo.number, 0
        pinfo.cols.info:clear()
    end
    call_in_frame = call_in_frame + 1
    local offset, total, pdu = 0, tvb:len(), 0
    while offset < total do
        local remaining = total - offset
        if remaining < STREAM_HEADER then
            if pinfo.can_desegment > 0 then
                pinfo.desegment_offset, pinfo.desegment_len = offset, DESEGMENT_ONE_MORE_SEGMENT
                return total
            end
            root:add(usmp, tvb(offset)):add_proto_expert_info(e.truncated, "Stream frame header cut short")
            append_info(pinfo, "truncated frame")
            return total
        end
        local t = tvb(offset, 1):uint()
        local need = STREAM_HEADER + tvb(offset + 1, 2):uint()
        if type_names[t] == nil then
            -- An undefined type ends the stream (section 2): its length
            -- means nothing, so the rest of the segment is not framed.
            local tree = root:add(usmp, tvb(offset), "USMP " .. type_label(t))
            tree:add(f.type, tvb(offset, 1))
            tree:add_proto_expert_info(e.unknown_type, string.format("Undefined frame type 0x%02x", t))
            append_info(pinfo, type_label(t))
            return total
        end
        if remaining < need then
            if pinfo.can_desegment > 0 then
                pinfo.desegment_offset, pinfo.desegment_len = offset, need - remaining
                return total
            end
            local tree = root:add(usmp, tvb(offset), "USMP " .. type_label(t))
            tree:add(f.type, tvb(offset, 1))
            tree:add(f.length, tvb(offset + 1, 2))
            tree:add_proto_expert_info(e.truncated, string.format("%d of %d bytes", remaining, need))
            append_info(pinfo, type_label(t) .. " (truncated)")
            return total
        end
        pdu = pdu + 1
        dissect_stream_frame(tvb, offset, pinfo, root, pinfo.number .. ":" .. call_in_frame .. ":" .. pdu)
        offset = offset + need
    end
    return total
end

--------------------------------------------------------------------------
-- Datagram mode (sections 5.2, 6.2), over UDP and COBS
--------------------------------------------------------------------------

-- Datagram records carry their counter (seq) and their session index
-- (6.2), so each opens on its own, from the key log's sessions with that
-- index; what opened is remembered per frame for later passes.
local dgram_opened = {} -- "frame:n" -> opened record

local function open_datagram_record(record_key, header_bytes, sealed_bytes, index, seq)
    local cached = dgram_opened[record_key]
    if cached ~= nil then return cached end
    local candidates = keys_for_index(index)
    if #candidates == 0 then return nil, "no_key" end
    -- The session index is the same both ways (6.2): the key that verifies
    -- the tag tells the direction.
    for _, keys in ipairs(candidates) do
        for _, direction in ipairs({ "c2s", "s2c" }) do
            local plaintext = aes256_gcm_open(keys[direction], nonce_for(seq), header_bytes, sealed_bytes)
            if plaintext ~= nil then
                local opened = { plaintext = plaintext, counter = seq, direction = direction,
                                 session_id = keys.session_id }
                dgram_opened[record_key] = opened
                return opened
            end
        end
    end
    return nil, "bad_tag"
end

-- One datagram frame: the whole of `tvb`.
local function dissect_datagram_frame(tvb, pinfo, root, record_key)
    local len = tvb:len()
    if len == 0 then
        root:add(usmp_dgram, tvb()):add_proto_expert_info(e.truncated, "Empty datagram")
        append_info(pinfo, "empty datagram")
        return
    end
    local t = tvb(0, 1):uint()
    local tree = root:add(usmp_dgram, tvb(), "USMP " .. type_label(t))
    tree:add(f.type, tvb(0, 1))
    local summary
    if type_names[t] == nil then
        tree:add_proto_expert_info(e.unknown_type, string.format("Undefined frame type 0x%02x", t))
    elseif is_record(t) then
        if len < DATAGRAM_HEADER + TAG_BYTES then
            tree:add_proto_expert_info(e.bad_length,
                string.format("Record of %d bytes, shorter than its 9-byte header and 16-byte tag", len))
        else
            tree:add(f.session_index, tvb(1, 3))
            tree:add(f.seq, tvb(4, 5), tvb(4, 5):uint64())
            local seq = 0
            for i = 4, 8 do seq = seq * 256 + tvb(i, 1):uint() end
            local sealed = tvb(DATAGRAM_HEADER)
            local opened, why = open_datagram_record(record_key, tvb(0, DATAGRAM_HEADER):raw(), sealed:raw(),
                                                     tvb(1, 3):raw(), seq)
            summary = add_record(t, tvb(0, DATAGRAM_HEADER), sealed, tree, pinfo, opened, why)
            summary = string.format("seq %d", seq) .. (summary and (", " .. summary) or "")
        end
    else
        local body_len = len - 1
        if not handshake_length_ok(t, body_len, true) then
            tree:add_proto_expert_info(e.bad_length, string.format("%s body of %d bytes, expected %d",
                                                                   type_label(t), body_len, handshake_body[t]))
        else
            summary = dissect_handshake_body(t, tvb(1), tree, pinfo)
        end
    end
    append_info(pinfo, type_label(t) .. (summary and (" (" .. summary .. ")") or ""))
end

function usmp_dgram.dissector(tvb, pinfo, root)
    pinfo.cols.protocol:set("USMP")
    pinfo.cols.info:clear()
    dissect_datagram_frame(tvb, pinfo, root, pinfo.number .. ":1")
    return tvb:len()
end

-- COBS decoding (section 10). Returns the decoded bytes, or nil and a reason.
local function cobs_decode(encoded)
    local out, pos, n = {}, 1, #encoded
    while pos <= n do
        local code = encoded:byte(pos)
        if code == 0 then return nil, "zero byte inside a frame" end
        if pos + code - 1 > n then return nil, "code byte points past the frame's end" end
        for i = pos + 1, pos + code - 1 do
            if encoded:byte(i) == 0 then return nil, "zero byte inside a frame" end
            out[#out + 1] = encoded:sub(i, i)
        end
        pos = pos + code
        if code < 0xFF and pos <= n then out[#out + 1] = "\0" end
    end
    return table.concat(out)
end

function usmp_cobs.dissector(tvb, pinfo, root)
    pinfo.cols.protocol:set("USMP")
    pinfo.cols.info:clear()
    local total, start, n = tvb:len(), 0, 0
    for pos = 0, total - 1 do
        local at_end = pos == total - 1
        local is_delimiter = tvb(pos, 1):uint() == 0
        if is_delimiter or at_end then
            local stop = is_delimiter and pos or pos + 1
            if stop > start then -- an empty frame (two delimiters) is ignored (10)
                n = n + 1
                local range = tvb(start, stop - start)
                local tree = root:add(usmp_cobs, tvb(start, pos + 1 - start))
                tree:add(f.cobs_encoded, range)
                if not is_delimiter then
                    tree:add_proto_expert_info(e.cobs_unterminated)
                end
                local decoded, why = cobs_decode(range:raw())
                if decoded == nil then
                    tree:add_proto_expert_info(e.bad_cobs, why)
                    append_info(pinfo, "bad COBS frame")
                else
                    tree:add(f.cobs_length, range, #decoded):set_generated()
                    local dtvb = ByteArray.new(decoded, true):tvb("COBS-decoded")
                    dissect_datagram_frame(dtvb, pinfo, tree, pinfo.number .. ":" .. n)
                end
            end
            start = pos + 1
        end
    end
    return total
end

--------------------------------------------------------------------------
-- Registration
--------------------------------------------------------------------------

local registered = { tcp = 0, udp = 0 }

local function register_ports()
    local tcp, udp = DissectorTable.get("tcp.port"), DissectorTable.get("udp.port")
    if registered.tcp ~= 0 then tcp:remove(registered.tcp, usmp) end
    if registered.udp ~= 0 then udp:remove(registered.udp, usmp_dgram) end
    registered.tcp, registered.udp = usmp.prefs.tcp_port, usmp.prefs.udp_port
    if registered.tcp ~= 0 then tcp:add(registered.tcp, usmp) end
    if registered.udp ~= 0 then udp:add(registered.udp, usmp_dgram) end
end

function usmp.prefs_changed()
    keylog.path, keylog.size = nil, -1
    register_ports()
end

function usmp.init()
    stream_conns, stream_pdu_counter, stream_pdu_opened, dgram_opened = {}, {}, {}, {}
    last_frame, call_in_frame = -1, 0
end

register_ports()
-- Decode As lists both for any port.
DissectorTable.get("tcp.port"):add_for_decode_as(usmp)
DissectorTable.get("udp.port"):add_for_decode_as(usmp_dgram)
