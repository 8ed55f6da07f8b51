package org.adcsr.srcore

import kotlin.math.abs
import kotlin.test.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class TilingTest {
    private fun image(h: Int, w: Int, f: (Int, Int, Int) -> Float) =
        FloatImage(3, h, w).also { img -> for (c in 0 until 3) for (y in 0 until h) for (x in 0 until w) img[c, y, x] = f(c, y, x) }

    @Test
    fun tileStartsCoverTheImageWithAtLeastTheOverlap() {
        for (size in listOf(16, 17, 40, 100, 257)) for ((tile, overlap) in listOf(16 to 4, 16 to 8, 32 to 8)) {
            val s = Tiler.tileStarts(size, tile, overlap)
            assertEquals(0, s.first())
            assertEquals(maxOf(size - tile, 0), s.last())
            for (k in 1 until s.size) assertTrue(s[k - 1] + tile - s[k] >= overlap, "size $size: ${s.toList()}")
        }
        assertContentEquals(intArrayOf(0, 8, 16, 24), Tiler.tileStarts(40, 16, 8))
    }

    @Test
    fun windowsOfOverlappingTilesSumToOne() {
        val starts = Tiler.tileStarts(57, 16, 6)
        for (blend in Blend.values()) {
            val sum = FloatArray(57 * 4)
            for (i in starts.indices) {
                val win = Tiler.axisWindow(starts, i, 16, 4, blend)
                for (k in win.indices) sum[starts[i] * 4 + k] += win[k]
            }
            for (v in sum) assertTrue(abs(v - 1f) < 1e-6f, "$blend: $v")
        }
    }

    @Test
    fun aConstantImageStaysConstant() {
        val lr = image(37, 53) { c, _, _ -> 0.2f + 0.3f * c }
        val sr = Tiler(NearestModel(16), 4).upscale(lr)
        for (c in 0 until 3) for (y in 0 until sr.height) for (x in 0 until sr.width) {
            assertTrue(abs(sr[c, y, x] - (0.2f + 0.3f * c)) < 1e-6f)
        }
    }

    @Test
    fun anIdentityLikeModelReproducesItsInput() {
        val lr = image(29, 45) { c, y, x -> ((y * 31 + x * 17 + c * 7) % 97) / 96f }
        val sr = Tiler(NearestModel(16, multiple = 4), 6).upscale(lr)  // padded to 32×48, cropped back
        for (c in 0 until 3) for (y in 0 until sr.height) for (x in 0 until sr.width) {
            assertTrue(abs(sr[c, y, x] - lr[c, y / 4, x / 4]) < 1e-6f, "($c, $y, $x)")
        }
    }

    @Test
    fun noSeamAcrossTileBorders() {
        // a model that disagrees with its neighbours at tile borders: the blended output still
        // changes by no more than the model's own ramp per pixel anywhere
        val lr = image(40, 40) { _, _, _ -> 0.5f }
        val sr = Tiler(BorderBiasedModel(16), 8).upscale(lr)
        var worst = 0f
        for (y in 0 until sr.height) for (x in 1 until sr.width) worst = maxOf(worst, abs(sr[0, y, x] - sr[0, y, x - 1]))
        assertTrue(worst < 0.0015f, "largest step between neighbouring pixels: $worst")
    }

    @Test
    fun bandsJoinToTheWholeResult() {
        val lr = image(45, 30) { c, y, x -> ((y * 5 + x * 3 + c) % 11) / 10f }
        val tiler = Tiler(ToyConvModel(16), 6)
        val whole = tiler.upscale(lr)
        var row = 0
        val heights = ArrayList<Int>()
        tiler.bands(ImageRows(lr)) { band ->
            heights += band.height
            for (c in 0 until 3) for (r in 0 until band.height) for (x in 0 until band.width) {
                assertEquals(whole[c, row + r, x], band[c, r, x].coerceIn(0f, 1f))
            }
            row += band.height
        }
        assertEquals(whole.height, row)
        assertTrue(heights.size > 1, "one band only: $heights")
    }

    @Test
    fun progressCountsEveryTileAndCancelStops() {
        val lr = image(40, 40) { _, _, _ -> 0.5f }
        val tiler = Tiler(NearestModel(16), 8)
        val seen = ArrayList<Int>()
        tiler.upscale(lr, progress = { done, total -> seen += done; assertEquals(16, total) })
        assertEquals((1..16).toList(), seen)
        var calls = 0
        assertFailsWith<kotlin.coroutines.cancellation.CancellationException> {
            tiler.upscale(lr, progress = { _, _ -> calls++ }, cancelled = { calls >= 3 })
        }
        assertEquals(3, calls)
    }

    @Test
    fun paddingReflectsLikeTorch() {
        val img = image(3, 4) { _, y, x -> (y * 4 + x).toFloat() }
        val p = Tiler.padTo(img, 5, 6)
        assertEquals(listOf(0f, 1f, 2f, 3f, 2f, 1f), (0 until 6).map { p[0, 0, it] })
        assertEquals(listOf(0f, 4f, 8f, 4f, 0f), (0 until 5).map { p[0, it, 0] })
        val r = Tiler.padTo(image(2, 2) { _, y, x -> (y * 2 + x).toFloat() }, 5, 2)  // longer than the image: replicate
        assertEquals(listOf(0f, 2f, 2f, 2f, 2f), (0 until 5).map { r[0, it, 0] })
    }
}
