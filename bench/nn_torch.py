"""PyTorch peer of covct-bench-nn (bench/bench_nn.c) for bench/run.sh.

Usage: nn_torch.py MODEL.covctnn SIZE N THREADS [LOGITS.f32]

Reads the covct model file with numpy (format:
docs/internals/model-format.md; the CRC is checked), builds the same U-Net
in PyTorch with those weights, and times its forward pass in eval mode
(running batch-norm statistics, torch.no_grad) on the same input as
covct-bench-nn: one warm-up, then N timed runs, printing
"best B median M" (seconds per forward) like covct-bench-nn.  With
LOGITS.f32 (covct-bench-nn's output for the same model and SIZE) it also
prints the largest absolute difference of the logits and exits 1 if it is
1e-3 or more.

The network (src/nn/model.c, covct_nn_unet): per level l (base x 2^l
channels) two conv3x3 (no bias, padding 1) -> BatchNorm (eps 1e-5) ->
ReLU, max pooling 2 between levels; going up, ConvTranspose2d(k 2,
stride 2, bias) -> concat(up, skip) -> two conv3x3-BN-ReLU; a final 1x1
conv with bias to the class logits.  Parameters in the file, in
covct_nn_param() order: per operation as added, conv weight (O, I, K, K)
then bias; transposed conv weight (I, O, K, K) then bias; batch norm
gamma, beta, running mean, running variance; every vector stored as
(1, C, 1, 1).

The input (bench_nn.c builds the same; keep the two in step): pixel (x, y),
u = (x + 0.5) / SIZE, v = (y + 0.5) / SIZE, value
  0.5 + 0.25 sin(2 pi 3 u) cos(2 pi 2 v) + 0.2 (u - v)
in float64, rounded to float32; shape 1 x in_channels x SIZE x SIZE.

Threads: torch.set_num_threads(THREADS) (OMP_NUM_THREADS is set to the
same before torch is imported).
"""
import json
import os
import struct
import sys
import time
import zlib

import numpy as np

MAGIC = b"COVCTNN\0"


def read_model(path):
    """(architecture dict, list of float32 arrays with the header's
    shapes, in file order)."""
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:8] != MAGIC:
        sys.exit("%s: not a covct model file" % path)
    version, hlen = struct.unpack_from("<II", buf, 8)
    if version != 1:
        sys.exit("%s: model format version %d, this script reads 1"
                 % (path, version))
    if (zlib.crc32(buf[:-4]) & 0xFFFFFFFF) != struct.unpack("<I", buf[-4:])[0]:
        sys.exit("%s: CRC-32 mismatch" % path)
    header = json.loads(buf[16:16 + hlen].decode("utf-8"))
    (dlen,) = struct.unpack_from("<Q", buf, 16 + hlen)
    doff = 24 + hlen
    if doff + dlen + 4 != len(buf):
        sys.exit("%s: parameter length does not match the file" % path)
    data = np.frombuffer(buf, dtype="<f4", count=dlen // 4, offset=doff)
    params, pos = [], 0
    for shape in header["parameters"]:
        n = int(np.prod(shape))
        params.append(data[pos:pos + n].astype(np.float32).reshape(shape))
        pos += n
    if pos != data.size:
        sys.exit("%s: header shapes cover %d of %d floats" % (path, pos,
                                                               data.size))
    arch = header["architecture"]
    if arch.get("name") != "unet":
        sys.exit("%s: architecture %r, expected unet" % (path, arch.get("name")))
    return arch, params


def make_input(size, channels):
    u = (np.arange(size, dtype=np.float64) + 0.5) / size
    v = u[:, None]        # rows: y
    img = (0.5 + 0.25 * np.sin(2 * np.pi * 3 * u[None, :])
           * np.cos(2 * np.pi * 2 * v) + 0.2 * (u[None, :] - v))
    img = img.astype(np.float32)
    return np.broadcast_to(img, (1, channels, size, size)).copy()


def build(torch, arch, params):
    tnn = torch.nn
    F = torch.nn.functional
    it = iter(params)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    def conv(cin, cout, k, pad, bias):
        m = tnn.Conv2d(cin, cout, k, padding=pad, bias=bias)
        w = next(it)
        assert w.shape == (cout, cin, k, k), w.shape
        m.weight.data.copy_(t(w))
        if bias:
            m.bias.data.copy_(t(next(it)).reshape(-1))
        return m

    def bn(c):
        m = tnn.BatchNorm2d(c, eps=1e-5)
        for dst in (m.weight.data, m.bias.data, m.running_mean,
                    m.running_var):
            a = next(it)
            assert a.shape == (1, c, 1, 1), a.shape
            dst.copy_(t(a).reshape(-1))
        return m

    def cbr(cin, cout):
        return tnn.Sequential(conv(cin, cout, 3, 1, False), bn(cout),
                              tnn.ReLU(inplace=True))

    class UNet(tnn.Module):
        def __init__(self):
            super().__init__()
            depth, base = arch["depth"], arch["base"]
            self.down = tnn.ModuleList()
            prev = arch["in_channels"]
            for lvl in range(depth):
                ch = base << lvl
                self.down.append(tnn.Sequential(cbr(prev, ch), cbr(ch, ch)))
                prev = ch
            self.up, self.upconv = tnn.ModuleList(), tnn.ModuleList()
            for lvl in range(depth - 2, -1, -1):
                ch = base << lvl
                m = tnn.ConvTranspose2d(prev, ch, 2, stride=2, bias=True)
                w = next(it)
                assert w.shape == (prev, ch, 2, 2), w.shape
                m.weight.data.copy_(t(w))
                m.bias.data.copy_(t(next(it)).reshape(-1))
                self.up.append(m)
                self.upconv.append(tnn.Sequential(cbr(2 * ch, ch),
                                                  cbr(ch, ch)))
                prev = ch
            self.head = conv(prev, arch["classes"], 1, 0, True)

        def forward(self, x):
            skips = []
            for i, block in enumerate(self.down):
                x = block(x)
                if i + 1 < len(self.down):
                    skips.append(x)
                    x = F.max_pool2d(x, 2)
            for up, block in zip(self.up, self.upconv):
                x = block(torch.cat([up(x), skips.pop()], 1))
            return self.head(x)

    net = UNet()
    if next(it, None) is not None:
        sys.exit("model file has more parameters than the U-Net")
    return net.eval()


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit("usage: nn_torch.py MODEL.covctnn SIZE N THREADS "
                 "[LOGITS.f32]")
    path, size, runs, threads = (sys.argv[1], int(sys.argv[2]),
                                 int(sys.argv[3]), int(sys.argv[4]))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    torch.set_num_threads(threads)
    arch, params = read_model(path)
    net = build(torch, arch, params)
    x = torch.from_numpy(make_input(size, arch["in_channels"]))
    times = []
    with torch.no_grad():
        logits = net(x).numpy().copy()    # warm-up
        for _ in range(runs):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[runs // 2] if runs % 2 else 0.5 * (
        times[runs // 2 - 1] + times[runs // 2])
    print("torch %s, %d threads, %dx%d, %d runs after 1 warm-up"
          % (torch.__version__, torch.get_num_threads(), size, size, runs),
          file=sys.stderr)
    print("best %.6f median %.6f" % (times[0], median))
    print("total %.6f" % sum(times))
    if len(sys.argv) == 6:
        ref = np.fromfile(sys.argv[5], dtype="<f4")
        if ref.size != logits.size:
            sys.exit("%s: %d floats, expected %d" % (sys.argv[5], ref.size,
                                                      logits.size))
        diff = float(np.abs(ref - logits.reshape(-1)).max())
        print("parity: max |covct - torch| logits %.3g (logits range "
              "%.3g..%.3g, std %.3g)" % (diff, logits.min(), logits.max(),
                                        logits.std()))
        if not diff < 1e-3:
            sys.exit("parity: difference %.3g >= 1e-3" % diff)


if __name__ == "__main__":
    main()
