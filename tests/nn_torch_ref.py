"""PyTorch reference values for the nn module's parity test (test_nn_torch.c).

Usage: nn_torch_ref.py OUTFILE

PyTorch is the numerical reference only; the C code never depends on it.
Builds, with torch.manual_seed(0), a small U-Net-like network that uses
every operation of include/covct/nn.h, in this fixed order (test_nn_torch.c
builds the same with the C API; "b" = with bias):

  x (N=2, 1 x 16 x 16)
  conv3x3 1->8 b pad 1; BN; ReLU; conv3x3 8->8 pad 2 dil 2; BN;
      LeakyReLU(0.1)                                   = e1 (8 x 16 x 16)
  maxpool2(e1); conv3x3 8->16 pad 1; BN; ReLU          = e2 (16 x 8 x 8)
  avgpool2(e2); conv1x1 16->16 b; ReLU                 = e3 (16 x 4 x 4)
  upsample2x(e3); conv3x3 16->16 b pad 1               = u2 (16 x 8 x 8)
  add(u2, e2); convT k2 s2 16->8 b                     = u1 (8 x 16 x 16)
  concat(u1, e1); conv3x3 16->8 b pad 1; ReLU;
      conv3x3 8->8 stride 2 pad 1; convT k2 s2 8->8;
      conv1x1 8->3 b                                   = logits (3 x 16 x 16)
  sigmoid(logits), softmax(logits, channels)

Parameters keep PyTorch's default initialisation (fp32) and are recorded in
nn.h's order: per operation in the order added, weight then bias (if any);
batch norm gamma, beta, running_mean, running_var.  Shapes as nn.h: conv
weight (O, I, K, K), transposed conv weight (I, O, K, K), vectors
(1, C, 1, 1).

The reference values are computed in float64 from these fp32 inputs
(parameters, input, upstream gradients are all fp32 numbers), so they are
the exact result rounded to fp32 and the comparison measures the C side's
error alone.  The fp32 PyTorch run's own distance to that reference is
printed for scale.

File format (little endian):
  "CVTT" magic, uint32 record count, then per record:
  uint32 name length, name bytes (no NUL), int32 n, c, h, w (missing
  dimensions are 1), float32 data[n*c*h*w] (NCHW, w fastest).

Records:
  input                     network input (2, 1, 16, 16)
  param.NN                  parameter NN as initialised (NN = 00, 01, ...)
  train.logits / train.sigmoid / train.softmax   training-mode forward
  G.logits, G.softmax, G.sigmoid                 upstream gradients
  grad.NN                   d/d param NN after backward(logits, G.logits)
                            (trainable parameters only)
  input_grad.logits         d/d input after that backward
  stats.NN                  running statistics (buffers) after the forward
  input_grad.softmax        d/d input, backward(softmax, G.softmax) alone
  input_grad.sigmoid        d/d input, backward(sigmoid, G.sigmoid) alone
  eval.logits               inference-mode forward (running statistics)
  loss.logits, loss.labels  (2, 3, 8, 8) logits, (2, 1, 8, 8) labels 0..2
  loss.ce, loss.ce_grad     mean cross-entropy and its gradient
  loss.dice, loss.dice_grad soft Dice loss as nn.h defines it, gradient
  loss.dice_infection(_grad) infection soft Dice (any class vs background)
  adamA.param.NN, adamA.grad.S.NN, adamA.after.S.NN   (S = 1..3)
  adamB.*                   the same with a second lr / weight decay
      The AdamW graph is conv3x3 2->3 b pad 1; BN (params 0..5); its
      buffers (4, 5) must stay as they were.  adamA: lr 1e-3, wd 1e-4 (the
      issue's setting); adamB: lr 1e-2, wd 0.5, large enough that coupled
      (L2) decay or a missing bias correction shows beyond 1e-4.
"""
import copy
import struct
import sys

import torch
import torch.nn as tnn
import torch.nn.functional as F

MARGIN = 2e-5
ADAM_CONFIGS = {"adamA": (1e-3, 1e-4), "adamB": (1e-2, 0.5)}


def vec(t):
    return t.reshape(1, -1, 1, 1)


class Net(tnn.Module):
    """The network; `ops` lists the parameterised layers in nn.h order."""

    def __init__(self):
        super().__init__()
        self.c1 = tnn.Conv2d(1, 8, 3, padding=1, bias=True)
        self.b1 = tnn.BatchNorm2d(8)
        self.c2 = tnn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False)
        self.b2 = tnn.BatchNorm2d(8)
        self.c3 = tnn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.b3 = tnn.BatchNorm2d(16)
        self.c4 = tnn.Conv2d(16, 16, 1, bias=True)
        self.c5 = tnn.Conv2d(16, 16, 3, padding=1, bias=True)
        self.t1 = tnn.ConvTranspose2d(16, 8, 2, stride=2, bias=True)
        self.c6 = tnn.Conv2d(16, 8, 3, padding=1, bias=True)
        self.c7 = tnn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False)
        self.t2 = tnn.ConvTranspose2d(8, 8, 2, stride=2, bias=False)
        self.c8 = tnn.Conv2d(8, 3, 1, bias=True)
        self.ops = [self.c1, self.b1, self.c2, self.b2, self.c3, self.b3,
                    self.c4, self.c5, self.t1, self.c6, self.c7, self.t2,
                    self.c8]
        self.pre_relu = []   # inputs of ReLU/LeakyReLU (tie margins)
        self.pre_pool = []   # inputs of max pooling

    def forward(self, x):
        self.pre_relu, self.pre_pool = [], []

        def relu(t, slope=None):
            self.pre_relu.append(t.detach())
            return F.relu(t) if slope is None else F.leaky_relu(t, slope)

        h = relu(self.b1(self.c1(x)))
        e1 = relu(self.b2(self.c2(h)), 0.1)
        self.pre_pool.append(e1.detach())
        e2 = relu(self.b3(self.c3(F.max_pool2d(e1, 2))))
        e3 = relu(self.c4(F.avg_pool2d(e2, 2)))
        u2 = self.c5(F.interpolate(e3, scale_factor=2, mode="nearest"))
        u1 = self.t1(u2 + e2)
        h = relu(self.c6(torch.cat([u1, e1], 1)))
        logits = self.c8(self.t2(self.c7(h)))
        return logits, torch.sigmoid(logits), torch.softmax(logits, 1)


def param_list(ops):
    """(tensor, is_buffer) in nn.h order."""
    out = []
    for m in ops:
        if isinstance(m, tnn.BatchNorm2d):
            out += [(m.weight, False), (m.bias, False),
                    (m.running_mean, True), (m.running_var, True)]
        else:
            out.append((m.weight, False))
            if m.bias is not None:
                out.append((m.bias, False))
    return out


def shape4(t):
    """nn.h shape of a parameter: 1-D tensors are (1, C, 1, 1)."""
    if t.dim() == 1:
        return (1, t.shape[0], 1, 1)
    s = list(t.shape) + [1] * (4 - t.dim())
    return tuple(s)


class Writer:
    def __init__(self):
        self.records = []

    def add(self, name, t, shape=None):
        t = torch.as_tensor(t).detach().to(torch.float32).contiguous()
        if shape is None:
            shape = shape4(t) if t.dim() <= 1 else tuple(
                list(t.shape) + [1] * (4 - t.dim()))
        assert t.numel() == shape[0] * shape[1] * shape[2] * shape[3], name
        self.records.append((name, shape, t.numpy().astype("<f4").tobytes()))

    def write(self, path):
        with open(path, "wb") as f:
            f.write(b"CVTT" + struct.pack("<I", len(self.records)))
            for name, shape, data in self.records:
                nb = name.encode()
                f.write(struct.pack("<I", len(nb)) + nb)
                f.write(struct.pack("<4i", *shape) + data)


def margins(net, x):
    """Smallest |ReLU input| and smallest gap between the two largest values
    of a max-pool window in a training-mode forward of x (fp64)."""
    with torch.no_grad():
        net(x)
    relu = min(t.abs().min().item() for t in net.pre_relu)
    pool = 1e9
    for t in net.pre_pool:
        n, c, h, ww = t.shape
        win = (t.reshape(n, c, h // 2, 2, ww // 2, 2).permute(0, 1, 2, 4, 3, 5)
               .reshape(-1, 4))
        top = win.topk(2, dim=1).values
        pool = min(pool, (top[:, 0] - top[:, 1]).min().item())
    return relu, pool


def network(w):
    torch.manual_seed(0)
    net = Net()                      # fp32 default initialisation
    # The input: the first torch.randn draw (after the parameters) whose
    # ReLU inputs and max-pool windows are all at least MARGIN away from a
    # tie, so that fp32 rounding cannot flip a decision (and with it a
    # gradient) between C and the reference.  Drawn in training mode on a
    # copy, so the running statistics are untouched.
    probe = copy.deepcopy(net).double()
    probe.train()
    for attempt in range(1, 21):
        x = torch.randn(2, 1, 16, 16)
        m_relu, m_pool = margins(probe, x.double())
        if min(m_relu, m_pool) >= MARGIN:
            break
    else:
        sys.exit("no input draw without a near-tie ReLU/max-pool decision")
    print("input: draw %d; decision margins: min |ReLU input| %.2e, "
          "min max-pool gap %.2e" % (attempt, m_relu, m_pool))
    params = param_list(net.ops)
    for i, (p, _) in enumerate(params):
        w.add("param.%02d" % i, p, shape4(p))
    w.add("input", x)
    g_logits = torch.randn(2, 3, 16, 16)
    g_soft = torch.randn(2, 3, 16, 16)
    g_sig = torch.randn(2, 3, 16, 16)

    # fp32 run, only to print PyTorch's own fp32 rounding for scale.
    net32 = copy.deepcopy(net)
    net32.train()
    x32 = x.clone().requires_grad_(True)
    l32 = net32(x32)[0]
    l32.backward(g_logits)

    net = net.double()
    net.train()
    params = param_list(net.ops)
    xd = x.double().requires_grad_(True)
    logits, sig, soft = net(xd)
    print("training logits: fp32 torch vs fp64 max abs %.2e"
          % (l32.double() - logits).abs().max().item())
    w.add("train.logits", logits)
    w.add("train.sigmoid", sig)
    w.add("train.softmax", soft)
    w.add("G.logits", g_logits)
    w.add("G.softmax", g_soft)
    w.add("G.sigmoid", g_sig)
    for i, (p, buf) in enumerate(params):
        if buf:
            w.add("stats.%02d" % i, p, shape4(p))

    def grads(out, g, record_params):
        net.zero_grad(set_to_none=True)
        xd.grad = None
        out.backward(g.double(), retain_graph=True)
        if record_params:
            for i, (p, buf) in enumerate(params):
                if not buf:
                    w.add("grad.%02d" % i, p.grad, shape4(p))
        return xd.grad

    w.add("input_grad.logits", grads(logits, g_logits, True))
    gmax = max(p.grad.abs().max().item() for p, b in params if not b)
    err32 = max((p32.grad.double() - p.grad).abs().max().item()
                for (p, b), (p32, _) in zip(params, param_list(net32.ops))
                if not b)
    print("largest parameter gradient %.3g; fp32 torch vs fp64: parameter "
          "gradients max abs %.2e, input gradient %.2e" % (
              gmax, err32, (x32.grad.double() - xd.grad).abs().max().item()))
    w.add("input_grad.softmax", grads(soft, g_soft, False))
    w.add("input_grad.sigmoid", grads(sig, g_sig, False))

    net.eval()
    with torch.no_grad():
        w.add("eval.logits", net(x.double())[0])


def dice_loss(logits, labels):
    """nn.h: 1 - mean over classes 1..K-1 of
    (2 sum(p y) + 1) / (sum(p) + sum(y) + 1), sums over the whole batch."""
    p = torch.softmax(logits, 1)
    k = logits.shape[1]
    y = F.one_hot(labels.long(), k).permute(0, 3, 1, 2).to(p.dtype)
    d = [(2 * (p[:, c] * y[:, c]).sum() + 1) / (p[:, c].sum() + y[:, c].sum() + 1)
         for c in range(1, k)]
    return 1 - torch.stack(d).mean()


def dice_infection_loss(logits, labels):
    """nn.h: 1 - (2 sum(q y) + 1) / (sum(q) + sum(y) + 1), q = 1 - p(class 0),
    y = label > 0, sums over the whole batch."""
    q = 1 - torch.softmax(logits, 1)[:, 0]
    y = (labels > 0).to(q.dtype)
    return 1 - (2 * (q * y).sum() + 1) / (q.sum() + y.sum() + 1)


def losses(w):
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8) * 2
    labels = torch.randint(0, 3, (2, 8, 8))
    w.add("loss.logits", logits)
    w.add("loss.labels", labels.float(), (2, 1, 8, 8))
    for name, fn in (("ce", lambda l: F.cross_entropy(l, labels)),
                     ("dice", lambda l: dice_loss(l, labels)),
                     ("dice_infection", lambda l: dice_infection_loss(l, labels))):
        ld = logits.double().requires_grad_(True)
        v = fn(ld)
        v.backward()
        w.add("loss." + name, v.reshape(1), (1, 1, 1, 1))
        w.add("loss.%s_grad" % name, ld.grad)


def adam(w):
    for tag, (lr, wd) in ADAM_CONFIGS.items():
        torch.manual_seed(2)
        conv = tnn.Conv2d(2, 3, 3, padding=1, bias=True)
        bn = tnn.BatchNorm2d(3)
        with torch.no_grad():   # not the defaults, so decay on them shows
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
        plist = param_list([conv, bn])
        for i, (p, _) in enumerate(plist):
            w.add("%s.param.%02d" % (tag, i), p, shape4(p))
        train = [p.double().detach().requires_grad_(True)
                 for p, b in plist if not b]
        opt = torch.optim.AdamW(train, lr=lr, weight_decay=wd)
        for s in range(1, 4):
            opt.zero_grad()
            j = 0
            for i, (p, buf) in enumerate(plist):
                if buf:
                    continue
                g = torch.randn(p.shape)
                w.add("%s.grad.%d.%02d" % (tag, s, i), g, shape4(p))
                train[j].grad = g.double()
                j += 1
            opt.step()
            j = 0
            for i, (p, buf) in enumerate(plist):
                if buf:
                    w.add("%s.after.%d.%02d" % (tag, s, i), p, shape4(p))
                else:
                    w.add("%s.after.%d.%02d" % (tag, s, i), train[j],
                          shape4(p))
                    j += 1


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: nn_torch_ref.py OUTFILE")
    torch.set_num_threads(1)
    w = Writer()
    network(w)
    losses(w)
    adam(w)
    w.write(sys.argv[1])
    print("%d records written to %s" % (len(w.records), sys.argv[1]))


if __name__ == "__main__":
    main()
