# Lesion crops of synth 1.3 (top) against synth 1.4 (bottom) for docs/lesion_cells.jpg:
#   training/.venv/bin/python training/realism/lesion_sheet.py docs/lesion_cells.jpg OLD NEW
# where OLD and NEW hold dira-3 rendered by each build (synth --class dira --seed 3 --mpp 0.5
# --width-mm 2 --height-mm 1.5); crops of its pustule (90 um at x 1078, y 150) and inflamed
# coil (100 um at x 800, y 1000), 0.5 um/px shown x2.
import sys, numpy as np, tifffile
from PIL import Image, ImageDraw
out, old, new = sys.argv[1:4]
crops = [(1078, 150, 90), (800, 1000, 100)]
tiles = []
for d in (old, new):
    im = tifffile.imread(f"{d}/dira-3.tiff", level=0)
    row = []
    for x, y, um in crops:
        x0, y0, n = int((x - um / 2) * 2), int((y - um / 2) * 2), int(um * 2)
        cr = Image.fromarray(im[y0:y0 + n, x0:x0 + n]).resize((400, 400), Image.NEAREST)
        row.append(cr)
    tiles.append(row)
W, H = 400 * 2 + 10, 400 * 2 + 10 + 2 * 22
sheet = Image.new("RGB", (W, H), "white")
dr = ImageDraw.Draw(sheet)
for r, (row, label) in enumerate(zip(tiles, ["synth 1.3: synth 0.3's neutrophils", "synth 1.4: lobed neutrophils, granular cytoplasm, serum with fibrin"])):
    y = r * (400 + 22 + 10)
    dr.text((4, y + 4), label + " (dira-3: pustule 90 um | inflamed coil 100 um)", fill="black")
    for c, t in enumerate(row):
        sheet.paste(t, (c * 410, y + 22))
sheet.save(out, quality=88)
