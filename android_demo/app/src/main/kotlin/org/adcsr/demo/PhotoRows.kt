package org.adcsr.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.BitmapRegionDecoder
import android.graphics.Matrix
import android.graphics.Rect
import android.net.Uri
import android.os.Build
import androidx.exifinterface.media.ExifInterface
import org.adcsr.srcore.FloatImage
import org.adcsr.srcore.Pixels
import org.adcsr.srcore.RowSource

/**
 * A gallery photo as the tiler reads it: rows of the image as it is meant to be seen (EXIF
 * orientation applied), decoded region by region, so the photo itself is never decoded whole.
 */
class PhotoRows(context: Context, uri: Uri) : RowSource, AutoCloseable {
    private val decoder: BitmapRegionDecoder
    private val orientation: Int
    private val rawW: Int
    private val rawH: Int

    init {
        val resolver = context.contentResolver
        orientation = resolver.openInputStream(uri)!!.use {
            ExifInterface(it).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL)
        }
        decoder = resolver.openInputStream(uri)!!.use { stream ->
            if (Build.VERSION.SDK_INT >= 31) BitmapRegionDecoder.newInstance(stream)!!
            else @Suppress("DEPRECATION") BitmapRegionDecoder.newInstance(stream, false)!!
        }
        rawW = decoder.width
        rawH = decoder.height
    }

    private val transposed get() = orientation in 5..8

    override val width get() = if (transposed) rawH else rawW
    override val height get() = if (transposed) rawW else rawH

    override fun rows(top: Int, count: Int): FloatImage {
        val rect = when (orientation) {
            ExifInterface.ORIENTATION_ROTATE_180, ExifInterface.ORIENTATION_FLIP_VERTICAL -> Rect(0, rawH - top - count, rawW, rawH - top)
            ExifInterface.ORIENTATION_ROTATE_90, ExifInterface.ORIENTATION_TRANSPOSE -> Rect(top, 0, top + count, rawH)
            ExifInterface.ORIENTATION_ROTATE_270, ExifInterface.ORIENTATION_TRANSVERSE -> Rect(rawW - top - count, 0, rawW - top, rawH)
            else -> Rect(0, top, rawW, top + count)
        }
        val region = decoder.decodeRegion(rect, BitmapFactory.Options().apply { inPreferredConfig = Bitmap.Config.ARGB_8888 })
        val upright = orient(region, orientation)
        check(upright.width == width && upright.height == count) { "decoded ${upright.width}×${upright.height}, expected ${width}×$count" }
        val argb = IntArray(upright.width * upright.height)
        upright.getPixels(argb, 0, upright.width, 0, 0, upright.width, upright.height)
        if (upright !== region) upright.recycle()
        region.recycle()
        return Pixels.toImage(argb, width, count)
    }

    override fun close() = decoder.recycle()

    companion object {
        fun orient(bitmap: Bitmap, orientation: Int): Bitmap {
            val m = Matrix()
            when (orientation) {
                ExifInterface.ORIENTATION_FLIP_HORIZONTAL -> m.setScale(-1f, 1f)
                ExifInterface.ORIENTATION_ROTATE_180 -> m.setRotate(180f)
                ExifInterface.ORIENTATION_FLIP_VERTICAL -> { m.setRotate(180f); m.postScale(-1f, 1f) }
                ExifInterface.ORIENTATION_TRANSPOSE -> { m.setRotate(90f); m.postScale(-1f, 1f) }
                ExifInterface.ORIENTATION_ROTATE_90 -> m.setRotate(90f)
                ExifInterface.ORIENTATION_TRANSVERSE -> { m.setRotate(-90f); m.postScale(-1f, 1f) }
                ExifInterface.ORIENTATION_ROTATE_270 -> m.setRotate(-90f)
                else -> return bitmap
            }
            return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, m, true)
        }

        /** An upright preview no longer than [maxSide] on its long side (for the comparison view). */
        fun preview(context: Context, uri: Uri, maxSide: Int): Bitmap {
            val resolver = context.contentResolver
            val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
            resolver.openInputStream(uri)!!.use { BitmapFactory.decodeStream(it, null, bounds) }
            var sample = 1
            while (maxOf(bounds.outWidth, bounds.outHeight) / (sample * 2) >= maxSide) sample *= 2
            val bmp = resolver.openInputStream(uri)!!.use {
                BitmapFactory.decodeStream(it, null, BitmapFactory.Options().apply { inSampleSize = sample })
            } ?: throw IllegalArgumentException("this file is not an image Android can decode")
            val orientation = resolver.openInputStream(uri)!!.use {
                ExifInterface(it).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL)
            }
            return orient(bmp, orientation)
        }
    }
}
