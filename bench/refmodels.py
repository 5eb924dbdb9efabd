"""captiongo's models in PyTorch, written once: the golden tests (model/*_test.go),
the timed references of `make bench` and the Flickr8k reference (flickr8k_ref.py)
all build them from here.

The module tree and parameter names are captiongo's VarStore names (the
baseline's CNNtoRNN: encoderCNN.inception.*, decoderRNN.*), so a state_dict
saved here loads into captiongo as it is, and the reverse. Modules are created
in the same order as captiongo's tests and references always created them, so
a seed gives the weights it always gave."""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

PAD = 0


class LSTMDecoder(nn.Module):
    """The baseline's DecoderRNN: Embedding, LSTM, Linear (model/lstm.go). It reads
    the image embedding (the encoder head's output, E values) first, then the
    words; dropout p on the word embeddings (0: none)."""

    def __init__(s, V, E, H, L=1, p=0.0):
        super().__init__()
        s.embed, s.lstm, s.linear = nn.Embedding(V, E), nn.LSTM(E, H, L), nn.Linear(H, V)
        s.drop = nn.Dropout(p)

    def teacher(s, feat, tok):
        """Teacher forcing: logits (T-1) x B x V aligned with tok[:, 1:]. feat may be a
        function that computes the image embedding: it is called after the words'
        dropout, the order the Flickr8k reference has always drawn its masks in."""
        emb = s.drop(s.embed(tok[:, :-1].t()))
        if callable(feat):
            feat = feat()
        out, _ = s.lstm(torch.cat([feat.unsqueeze(0), emb], 0))
        return s.linear(out[1:])

    def start(s, feat):
        _, (h, c) = s.lstm(feat.unsqueeze(0))
        return [h, c]

    def step(s, st, tok):
        out, (h, c) = s.lstm(s.embed(tok).unsqueeze(0), (st[0], st[1]))
        st[0], st[1] = h, c
        return s.linear(out[0]), None

    def reorder(s, st, idx):
        return [t[:, idx] for t in st]


class Attention(nn.Module):
    """Show, Attend and Tell's soft attention; att1 is encoder_att(enc), computed once per image."""

    def __init__(s, D, H, A):
        super().__init__()
        s.encoder_att, s.decoder_att, s.full_att = nn.Linear(D, A), nn.Linear(H, A), nn.Linear(A, 1)

    def forward(s, enc, att1, h):
        e = s.full_att(torch.relu(att1 + s.decoder_att(h).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(e, 1)
        return (enc * alpha.unsqueeze(2)).sum(1), alpha


class SAT(nn.Module):
    """Show, Attend and Tell's decoder in captiongo's layout (model/attention.go), on
    the map's rows enc (B x P x D); dropout p before fc. PyTorch's default
    initialisation; init_weights() applies captiongo's."""

    def __init__(s, V, E, H, A, D, p=0.0):
        super().__init__()
        s.attention = Attention(D, H, A)
        s.embed = nn.Embedding(V, E)
        s.init_h, s.init_c, s.f_beta = nn.Linear(D, H), nn.Linear(D, H), nn.Linear(H, D)
        s.decode_step = nn.LSTMCell(E + D, H)
        s.fc = nn.Linear(H, V)
        s.drop = nn.Dropout(p)

    def init_weights(s):
        """The initialisation captiongo's attention decoder trains from (model/attention.go):
        embedding and fc weights uniform in [-0.1, 0.1], fc bias 0; the rest PyTorch's defaults."""
        nn.init.uniform_(s.embed.weight, -0.1, 0.1)
        nn.init.uniform_(s.fc.weight, -0.1, 0.1)
        nn.init.zeros_(s.fc.bias)
        return s

    def start(s, enc):
        mean = enc.mean(1)
        return [enc, s.attention.encoder_att(enc), s.init_h(mean), s.init_c(mean)]

    def step(s, st, tok):
        enc, att1, h, c = st
        ctx, alpha = s.attention(enc, att1, h)
        ctx = torch.sigmoid(s.f_beta(h)) * ctx
        h, c = s.decode_step(torch.cat([s.embed(tok), ctx], 1), (h, c))
        st[2], st[3] = h, c
        return s.fc(s.drop(h)), alpha

    def reorder(s, st, idx):
        return [t[idx] for t in st]

    def teacher(s, enc, tok):
        """Logits and attention weights, (T-1) x B x V and (T-1) x B x P."""
        st = s.start(enc)
        logits, alphas = [], []
        for t in range(tok.shape[1] - 1):
            l, a = s.step(st, tok[:, t])
            logits.append(l)
            alphas.append(a)
        return torch.stack(logits), torch.stack(alphas)


def inception(head=None, init_weights=True):
    """torchvision's Inception-v3 without AuxLogits; fc is the baseline's head
    Linear(2048, head), or the identity (the pooled 2048 features) when head is None."""
    inc = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=init_weights)
    inc.fc = nn.Linear(2048, head) if head else nn.Identity()
    return inc


def captioner(inc, decoder):
    """The module tree captiongo's checkpoints use: encoderCNN.inception, decoderRNN."""
    m = nn.Module()
    m.encoderCNN = nn.Module()
    m.encoderCNN.inception = inc
    m.decoderRNN = decoder
    return m


def baseline(V, E, H, L=1, p=0.0, init_weights=True):
    """The baseline's CNNtoRNN: Inception-v3 with its fc head, and the LSTM decoder."""
    inc = inception(E, init_weights)
    return captioner(inc, LSTMDecoder(V, E, H, L, p))


def show_attend_tell(V, E, H, A, D=2048, p=0.0, init_weights=True):
    """Inception-v3 (the pooled features; decoders read the Mixed_7c map) and SAT."""
    inc = inception(None, init_weights)
    return captioner(inc, SAT(V, E, H, A, D, p))


def pooled(inc, x):
    """Inception up to the pooled 2048-d features (its fc head skipped)."""
    fc = inc.fc
    inc.fc = nn.Identity()
    try:
        return inc(x)
    finally:
        inc.fc = fc


def calibrate_bn(inc, x, reset=True):
    """BatchNorm statistics from the batch x (a cumulative average over one pass), so
    that a random network neither vanishes nor explodes: its gradients flow."""
    for mod in inc.modules():
        if isinstance(mod, nn.BatchNorm2d):
            if reset:
                mod.reset_running_stats()
            mod.momentum = None
    inc.train()
    with torch.no_grad():
        inc(x)


def caption_loss(logits, alphas, tok, alpha_c=0.0):
    """Cross-entropy over the words (PAD ignored), plus alpha_c times the doubly
    stochastic attention penalty when there are attention weights."""
    tgt = tok[:, 1:].t()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=PAD)
    if alphas is not None and alpha_c > 0:
        mask = (tgt != PAD).float().unsqueeze(2)
        loss = loss + alpha_c * ((1 - (alphas * mask).sum(0)) ** 2).mean()
    return loss
