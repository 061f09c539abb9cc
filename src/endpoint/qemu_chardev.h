#pragma once

#include <string>

#include "common/status.h"
#include "endpoint/endpoint_spec.h"

namespace rngmux {

// Takes the value a user gives QEMU's -chardev (with or without a leading
// "-chardev ") and returns the complementary endpoint for rngmux, with QEMU
// compatibility on (default lead):
//   socket,id=c0,host=H,port=P[,reconnect=N]        -> listen tcp:H:P
//   socket,id=c0,host=H,port=P,server=on,wait=off   -> connect tcp:H:P
//   socket,id=c0,path=/p.sock[,server=on,...]       -> listen/connect unix:/p.sock
//   udp,id=c0,host=H,port=P                          -> listen udp:H:P (no primer)
//   udp,id=c0,host=H,port=P,localaddr=A,localport=L  -> connect udp:A:L,local=H:P,qemu
// The guest's device may follow, for vhost-user-rng (what a user copies from QEMU's
// command line):
//   socket,id=c0,path=/p.sock -device vhost-user-rng-pci,chardev=c0    -> listen vhost-user:/p.sock
//   socket,id=c0,path=/p.sock,server=on,wait=on -device vhost-user-rng-pci,...
//                                                                    -> connect vhost-user:/p.sock
// TLS (TCP only, as in QEMU): the chardev's tls-creds=ID names an -object given in the
// same value, as copied from QEMU's command line (before or after the -chardev):
//   socket,id=c0,host=H,port=P,reconnect=1,tls-creds=t0
//     -object tls-creds-x509,id=t0,dir=/pki,endpoint=client   -> listen tcp:H:P,qemu,tls-dir=/pki
//   socket,id=c0,host=H,port=P,server=on,wait=off,tls-creds=t0,tls-authz=a0
//     -object tls-creds-x509,id=t0,dir=/pki,endpoint=server   -> connect tcp:H:P,qemu,tls-dir=/pki
//     -object authz-simple,id=a0,identity=...
// rngmux takes the other role in the same directory (libvirt's chardev directory holds
// both pairs): server-cert.pem/server-key.pem when it listens, client-*.pem when it
// connects; ca-cert.pem and ca-crl.pem alike. The object's endpoint= must match the
// chardev's direction (QEMU checks that too). verify-peer=, priority=, sanity-check= and
// passwordid= are QEMU's settings for its own side and change nothing in rngmux (which
// verifies its peer by default; add tls-verify=off to `extra_options` for a QEMU without a
// client certificate). tls-authz= and the authz-* objects are accepted and ignored: QEMU
// enforces them itself when it listens, and rngmux has allow-subject= for its own side.
// Accepted keys: id, host, port, path, server, wait, reconnect, nodelay, ipv4, ipv6,
// tls-creds, tls-authz and QEMU's legacy flags "server"/"nowait"/"wait"; for udp: id,
// host, port, localaddr, localport, ipv4, ipv6. Booleans accept on/off/yes/no/true/false.
// Errors are one line naming the input and the problem:
//   qemu-chardev "socket,id=c0": needs host= and port=, or path=
//   qemu-chardev "socket,host=h,port=1,path=/x": give host/port or path, not both
//   qemu-chardev "udp,id=c0,host=h,port=1,localport=5": give localaddr= and localport=
//       together (rngmux needs QEMU's exact address to send to it)   (one line)
//   qemu-chardev "udp,id=c0,host=h,port=1,server=on": unknown key "server" for a udp chardev
//   qemu-chardev "socket,...,tls-creds=t0": tls-creds=t0 names no -object
//       tls-creds-x509,id=t0 (give it too, as on QEMU's command line: rngmux reads its dir=)
//   qemu-chardev "socket,path=/p,tls-creds=t0 ...": 'tls_creds' option is incompatible
//       with 'unix' address type (QEMU refuses it too)
//   qemu-chardev "...,server=on,tls-creds=t0 -object ...,endpoint=client": tls-creds=t0 has
//       endpoint=client but the chardev listens (server=on): QEMU expects endpoint=server
//   qemu-chardev "...": object "rng-egd" is not part of the chardev (give its
//       tls-creds-x509 and authz objects)
//   qemu-chardev "file,path=/x": chardev backend "file" cannot carry EGD (expected socket
//       or udp)
//   qemu-chardev "socket,host=h,port=1,telnet=on": unknown key "telnet"
//   qemu-chardev "socket,host=h,port=1,server=maybe": server: expected on or off
//   qemu-chardev "socket,host=h,port=1,server=on,reconnect=1":
//       QEMU refuses reconnect on a server socket   (one line in the message)
//   qemu-chardev "socket,host=h,port=1 -device vhost-user-rng-pci": vhost-user needs a unix
//       socket chardev (socket,path=...)
//   qemu-chardev "socket,path=/p,reconnect=1 -device vhost-user-rng-pci": reconnect= aborts
//       QEMU 7.2 with vhost-user-rng ...   (one line in the message)
//   qemu-chardev "socket,path=/p -device virtio-rng-pci": device "virtio-rng-pci" is not
//       vhost-user-rng-pci (an rng-egd guest needs only the -chardev)
// Repeated keys, a NUL byte ("contains a NUL byte"), reconnect=N with N not a
// number and a malformed endpoint (for example port=0 on a server) are errors
// too; values may use QEMU's ",," escape.
// `extra_options` is appended as endpoint options (e.g. "lead=256") so the
// same grammar as --listen applies.
Result<EndpointSpec> ParseQemuChardev(const std::string& text,
                                      const std::string& extra_options = "");

// The QEMU arguments that make a guest use `endpoint` (the rngmux side). A listen
// endpoint must carry the port actually bound (not 0), a udp connect endpoint the
// local address actually bound; one on a wildcard address (0.0.0.0, ::) is reached
// through its loopback address (127.0.0.1, ::1):
// "-chardev socket,id=rng0chr,host=127.0.0.1,port=1024,reconnect=1 -object
//  rng-egd,id=rng0,chardev=rng0chr -device virtio-rng-pci,rng=rng0"; for vhost-user
// the whole fragment, shared guest memory included (its size must equal -m):
// "-m 1024 -object memory-backend-memfd,id=mem,size=1024M,share=on -numa node,memdev=mem
//  -chardev socket,id=rng0chr,path=P[,server=on,wait=on] -device
//  vhost-user-rng-pci,chardev=rng0chr"
std::string QemuArgumentsFor(const EndpointSpec& endpoint);

}  // namespace rngmux
