package org.adcsr.srcore

import kotlin.coroutines.cancellation.CancellationException
import kotlin.math.PI
import kotlin.math.ceil
import kotlin.math.cos
import kotlin.math.max
import kotlin.math.min

/** How an SR tile's weight ramps over the pixels it shares with its neighbour. */
enum class Blend { COSINE, LINEAR }

/** Where LR rows come from: the whole image in memory, or (in the app) a region decoder that
 * reads only the rows a strip of tiles needs. */
interface RowSource {
    val width: Int
    val height: Int

    /** Rows [top, top + count) as a 3 × count × width image in [0, 1]. */
    fun rows(top: Int, count: Int): FloatImage
}

class ImageRows(private val img: FloatImage) : RowSource {
    override val width get() = img.width
    override val height get() = img.height
    override fun rows(top: Int, count: Int) = img.crop(top, 0, count, img.width)
}

/**
 * Overlapping tiles with feathered blending, written to match `adcsr.core.tiling` step for step
 * (same tile starts, windows, padding and accumulation order), so an 8-bit result is the same
 * bytes as Python's for the same model (the golden test in tests/test_android_core.py).
 *
 * The LR image is padded (reflect; replicate when a side is shorter than its padding) to a
 * multiple of the model's size multiple and cut into tiles of the model's side overlapping by at
 * least [overlap] pixels. Each SR tile is weighted by a separable window that ramps over exactly
 * the pixels it shares with a neighbour, so the weights of overlapping tiles sum to one. Work goes
 * strip by strip (one row of tiles): a band of output rows is handed out as soon as no later tile
 * touches it, so memory holds one strip whatever the image height.
 */
class Tiler(
    private val model: SrModel,
    private val overlap: Int,
    private val blend: Blend = Blend.COSINE,
) {
    init {
        require(overlap >= 0 && overlap < model.tile) { "tile overlap must be in [0, ${model.tile}), got $overlap" }
        require(model.tile % model.multiple == 0) { "tile ${model.tile} is not a multiple of ${model.multiple}" }
    }

    class Grid(val padded: Int, val length: Int, val starts: IntArray)

    /** Tiles in an image of this size (what a progress bar counts). */
    fun tileCount(width: Int, height: Int): Int =
        grid(width, model.tile, overlap, model.multiple).starts.size * grid(height, model.tile, overlap, model.multiple).starts.size

    /**
     * Streams the blended SR of [source] as bands (3 × rows × width·scale, not yet clamped or
     * colour-fixed), top to bottom; [progress] gets (tiles done, total); [cancelled] is polled
     * between tiles and stops the work with a [CancellationException].
     */
    fun bands(
        source: RowSource,
        progress: (Int, Int) -> Unit = { _, _ -> },
        cancelled: () -> Boolean = { false },
        sink: (FloatImage) -> Unit,
    ) {
        val s = model.scale
        val h = source.height
        val w = source.width
        val gy = grid(h, model.tile, overlap, model.multiple)
        val gx = grid(w, model.tile, overlap, model.multiple)
        val th = gy.length
        val tw = gx.length
        val ys = gy.starts
        val xs = gx.starts
        val wx = Array(xs.size) { axisWindow(xs, it, tw, s, blend) }
        val total = ys.size * xs.size
        var done = 0
        val outW = gx.padded * s
        var carry: Pair<FloatArray, FloatArray>? = null  // (3 × n × outW, n × outW) rows a later strip adds to
        for (i in ys.indices) {
            val y = ys[i]
            // the rows this strip needs, padded exactly as the whole image is (a slab from one
            // tile higher holds every row the bottom reflection copies)
            val top = if (y + th > h) max(0, y - th) else y
            val slab = source.rows(top, min(h, y + th) - top)
            val strip = padTo(slab, min(gy.padded, y + th) - top, gx.padded).crop(y - top, 0, th, gx.padded)
            val wy = axisWindow(ys, i, th, s, blend)
            val rowsOut = th * s
            val out = FloatArray(3 * rowsOut * outW)
            val weight = FloatArray(rowsOut * outW)
            carry?.let { (co, cw) ->
                val n = cw.size / outW
                for (c in 0 until 3) System.arraycopy(co, c * n * outW, out, c * rowsOut * outW, n * outW)
                System.arraycopy(cw, 0, weight, 0, n * outW)
            }
            for (j in xs.indices) {
                if (cancelled()) throw CancellationException("upscaling cancelled")
                val sr = model.upscaleTile(strip.crop(0, xs[j], th, tw))
                check(sr.channels == 3 && sr.height == th * s && sr.width == tw * s) {
                    "the model returned ${sr.channels}×${sr.height}×${sr.width} for a ${th}×$tw tile; expected ×$s RGB"
                }
                val x0 = xs[j] * s
                val wxj = wx[j]
                for (r in 0 until rowsOut) {
                    val wr = wy[r]
                    for (q in 0 until tw * s) {
                        val win = wr * wxj[q]
                        val o = r * outW + x0 + q
                        for (c in 0 until 3) {
                            out[c * rowsOut * outW + o] += sr.data[(c * rowsOut + r) * tw * s + q] * win
                        }
                        weight[o] += win
                    }
                }
                progress(++done, total)
            }
            val finished = if (i + 1 < ys.size) (ys[i + 1] - y) * s else rowsOut  // rows no later tile touches
            val keep = rowsOut - finished
            val co = FloatArray(3 * keep * outW)
            for (c in 0 until 3) System.arraycopy(out, (c * rowsOut + finished) * outW, co, c * keep * outW, keep * outW)
            carry = co to weight.copyOfRange(finished * outW, rowsOut * outW)
            val rows = min(finished, h * s - y * s)
            if (rows > 0) {
                val band = FloatImage(3, rows, w * s)
                for (c in 0 until 3) for (r in 0 until rows) for (q in 0 until w * s) {
                    band[c, r, q] = out[(c * rowsOut + r) * outW + q] / weight[r * outW + q]
                }
                sink(band)
            }
        }
    }

    /** The whole SR image (bands joined), colour-fixed with [fix] against [lr], clamped to [0, 1]. */
    fun upscale(
        lr: FloatImage,
        fix: ColorFix = ColorFix.NONE,
        progress: (Int, Int) -> Unit = { _, _ -> },
        cancelled: () -> Boolean = { false },
    ): FloatImage {
        val s = model.scale
        val out = FloatImage(3, lr.height * s, lr.width * s)
        var row = 0
        bands(ImageRows(lr), progress, cancelled) { band ->
            for (c in 0 until 3) for (r in 0 until band.height) {
                System.arraycopy(band.data, (c * band.height + r) * band.width, out.data, (c * out.height + row + r) * out.width, band.width)
            }
            row += band.height
        }
        val fixed = fix.apply(out, lr)
        for (k in fixed.data.indices) fixed.data[k] = fixed.data[k].coerceIn(0f, 1f)
        return fixed
    }

    companion object {
        /** Start offsets covering [0, size) with tiles of [tile] overlapping by at least [overlap],
         * spread evenly (Python's round: half to even). */
        fun tileStarts(size: Int, tile: Int, overlap: Int): IntArray {
            if (size <= tile) return intArrayOf(0)
            val gaps = ceil((size - tile).toDouble() / (tile - overlap)).toInt()
            return IntArray(gaps + 1) { Math.rint(it * (size - tile).toDouble() / gaps).toInt() }
        }

        fun ramp(n: Int, blend: Blend): FloatArray = FloatArray(n) {
            val t = (it.toFloat() + 0.5f) / n.toFloat()
            if (blend == Blend.LINEAR) t else 0.5f - 0.5f * cos(PI.toFloat() * t)
        }

        /** Blending weights (SR pixels) of tile [index] along one axis. */
        fun axisWindow(starts: IntArray, index: Int, tile: Int, scale: Int, blend: Blend): FloatArray {
            val w = FloatArray(tile * scale) { 1f }
            val before = if (index > 0) (starts[index - 1] + tile - starts[index]) * scale else 0
            val after = if (index < starts.size - 1) (starts[index] + tile - starts[index + 1]) * scale else 0
            if (before > 0) ramp(before, blend).copyInto(w)
            if (after > 0) {
                val r = ramp(after, blend)
                for (k in 0 until after) {
                    val at = w.size - after + k
                    w[at] = min(w[at], r[after - 1 - k])
                }
            }
            return w
        }

        fun grid(size: Int, tile: Int, overlap: Int, multiple: Int): Grid {
            val padded = (size + multiple - 1) / multiple * multiple
            val length = min(tile, padded)
            return Grid(padded, length, tileStarts(padded, length, overlap))
        }

        /** [img] padded at the bottom and right to h × w: reflect (no edge repeat) when both
         * paddings are shorter than the image, else replicate, as torch's F.pad modes. */
        fun padTo(img: FloatImage, h: Int, w: Int): FloatImage {
            val ph = h - img.height
            val pw = w - img.width
            if (ph == 0 && pw == 0) return img
            val reflect = ph < img.height && pw < img.width
            fun src(i: Int, n: Int) = when {
                i < n -> i
                reflect -> 2 * (n - 1) - i
                else -> n - 1
            }
            val out = FloatImage(img.channels, h, w)
            for (c in 0 until img.channels) for (y in 0 until h) {
                val sy = src(y, img.height)
                for (x in 0 until w) out[c, y, x] = img[c, sy, src(x, img.width)]
            }
            return out
        }
    }
}
