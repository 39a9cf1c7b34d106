# The far end of a VLAN trunk, for bench/tests/vlan.rs: a station on AF_PACKET that sees and
# sends 802.1Q-tagged frames without an 802.1Q device (the host has none).
#
#   vlan_outside.py IFACE respond SECONDS   answer ARP and ping for 10.1.0.100 on any VLAN, with
#                                           the tag the request came with; print "TAG SRCMAC
#                                           ETHERTYPE" per frame received ("-" for no tag)
#   vlan_outside.py IFACE send TAG|- COUNT DSTMAC DSTIP PORT PAYLOAD
#                                           send COUNT UDP datagrams from 10.1.0.100 tagged TAG
import socket, struct, sys, time

ME_MAC = bytes.fromhex("02000000aa01")
ME_IP = socket.inet_aton("10.1.0.100")
SOL_PACKET, PACKET_AUXDATA, TP_STATUS_VLAN_VALID = 263, 8, 1 << 4


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def frame(dst, tag, ethertype, payload):
    vlan = b"" if tag is None else struct.pack("!HH", 0x8100, tag)
    return dst + ME_MAC + vlan + struct.pack("!H", ethertype) + payload


def udp(dst_ip, port, data):
    u = struct.pack("!HHHH", 40000, port, 8 + len(data), 0) + data
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(u), 1, 0, 64, 17, 0, ME_IP, dst_ip)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + u


def respond(s, seconds):
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.settimeout(0.2)
    end = time.time() + seconds
    while time.time() < end:
        try:
            data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(20))
        except socket.timeout:
            continue
        tag = None
        for level, kind, value in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= 20:
                status, _, _, _, _, tci, _ = struct.unpack("IIIHHHH", value[:20])
                if status & TP_STATUS_VLAN_VALID:
                    tag = tci & 0xFFF
        if tag is None and data[12:14] == b"\x81\x00":  # still in the frame
            tag = struct.unpack("!H", data[14:16])[0] & 0xFFF
            data = data[:12] + data[16:]
        src, ethertype, body = data[6:12], struct.unpack("!H", data[12:14])[0], data[14:]
        if src == ME_MAC:
            continue
        print("%s %s %04x" % ("-" if tag is None else tag, src.hex(":"), ethertype), flush=True)
        if ethertype == 0x0806 and body[6:8] == b"\0\x01" and body[24:28] == ME_IP:
            reply = body[:6] + b"\0\x02" + ME_MAC + ME_IP + body[8:14] + body[14:18]
            s.send(frame(src, tag, 0x0806, reply))
        elif ethertype == 0x0800 and body[9] == 1 and body[16:20] == ME_IP and body[20] == 8:
            ihl = (body[0] & 15) * 4
            icmp = b"\0\0\0\0" + body[ihl + 4:]
            icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
            ip = body[:12] + body[16:20] + body[12:16]
            s.send(frame(src, tag, 0x0800, ip + body[20:ihl] + icmp))


def main():
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((sys.argv[1], 0))
    if sys.argv[2] == "respond":
        respond(s, float(sys.argv[3]))
        return
    tag = None if sys.argv[3] == "-" else int(sys.argv[3])
    dst = bytes.fromhex(sys.argv[5].replace(":", ""))
    ip = udp(socket.inet_aton(sys.argv[6]), int(sys.argv[7]), sys.argv[8].encode())
    for _ in range(int(sys.argv[4])):
        s.send(frame(dst, tag, 0x0800, ip))
        time.sleep(0.01)


main()
