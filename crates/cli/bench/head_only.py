"""PyTorch eager side of `suite bench head-only`: head-only fine-tuning of EfficientNet-Lite0 (pretrained weights,
new head) the plain way. The backbone is frozen in eval mode and runs on every batch of every epoch, only `_fc`
trains with AdamW, the validation set is evaluated after every epoch, and the weights are saved at the end.
End-to-end time, from building the model to the saved weights. Prints one JSON line."""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from torchvision import datasets, transforms as T
from efficientnet_lite_pytorch import EfficientNet

p = argparse.ArgumentParser()
p.add_argument("--data", required=True, help="ImageFolder root with train/ and val/")
p.add_argument("--weights", required=True, help="efficientnet-lite0 .pth")
p.add_argument("--out", required=True, help="folder for the saved weights")
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--weight-decay", type=float, default=0.01)
p.add_argument("--workers", type=int, default=2)
p.add_argument("--threads", type=int, required=True)
p.add_argument("--interop-threads", type=int, required=True)
p.add_argument("--device", default="cpu")
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.set_num_interop_threads(a.interop_threads)
torch.manual_seed(0)
dev = torch.device(a.device)
start = time.perf_counter()

# The preprocessing of the Lite0 weights, as suite's registry states it: bicubic resize 256, centre crop 224, [-1, 1].
pre = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                 T.Normalize([0.5] * 3, [0.5] * 3)])
train_ds = datasets.ImageFolder(os.path.join(a.data, "train"), pre)
val_ds = datasets.ImageFolder(os.path.join(a.data, "val"), pre)
train_dl = torch.utils.data.DataLoader(train_ds, a.batch, shuffle=True, num_workers=a.workers)
val_dl = torch.utils.data.DataLoader(val_ds, a.batch, num_workers=a.workers)

model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=a.weights, num_classes=len(train_ds.classes))
model = model.to(dev).eval()  # frozen backbone: running statistics, no drop-connect
model._dropout.train()  # the head's dropout stays on while training, as in suite
model.requires_grad_(False)
model._fc.requires_grad_(True)
opt = torch.optim.AdamW([{"params": [model._fc.weight], "weight_decay": a.weight_decay},
                         {"params": [model._fc.bias], "weight_decay": 0.0}], lr=a.lr)

accuracy = None
for epoch in range(a.epochs):
    model._dropout.train()
    for x, y in train_dl:
        loss = F.cross_entropy(model(x.to(dev)), y.to(dev))
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss.item()
    model._dropout.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in val_dl:
            correct += (model(x.to(dev)).argmax(1).cpu() == y).sum().item()
            total += len(y)
    accuracy = correct / total
torch.save(model.state_dict(), os.path.join(a.out, "model.pt"))
elapsed = time.perf_counter() - start

print(json.dumps({
    "seconds": elapsed,
    "train_images": len(train_ds),
    "val_images": len(val_ds),
    "val_accuracy": accuracy,
    "threads": torch.get_num_threads(),
    "interop_threads": torch.get_num_interop_threads(),
    "torch": torch.__version__,
}))
