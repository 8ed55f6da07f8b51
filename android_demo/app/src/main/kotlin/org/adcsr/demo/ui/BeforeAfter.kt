package org.adcsr.demo.ui

import android.graphics.Bitmap
import androidx.compose.foundation.Canvas
import androidx.compose.foundation.Image
import androidx.compose.foundation.gestures.detectHorizontalDragGestures
import androidx.compose.foundation.gestures.rememberTransformableState
import androidx.compose.foundation.gestures.transformable
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableFloatStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.draw.drawWithContent
import androidx.compose.ui.geometry.Offset
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.graphics.drawscope.clipRect
import androidx.compose.ui.graphics.graphicsLayer
import androidx.compose.ui.input.pointer.pointerInput
import androidx.compose.ui.layout.ContentScale
import androidx.compose.ui.unit.dp

/** The LR photo and its ×4 result in one frame: a vertical divider dragged across shows the
 * result on its right; pinch zooms and pans both together. */
@Composable
fun BeforeAfter(before: Bitmap, after: Bitmap?, beforeLabel: String, afterLabel: String) {
    var split by remember { mutableFloatStateOf(0.5f) }
    var scale by remember { mutableFloatStateOf(1f) }
    var offset by remember { mutableStateOf(Offset.Zero) }
    val zoom = rememberTransformableState { zoomChange, pan, _ ->
        scale = (scale * zoomChange).coerceIn(1f, 16f)
        offset = if (scale == 1f) Offset.Zero else offset + pan
    }
    val layer = Modifier.fillMaxSize().graphicsLayer {
        scaleX = scale; scaleY = scale; translationX = offset.x; translationY = offset.y
    }
    val beforeImage = remember(before) { before.asImageBitmap() }
    val afterImage = remember(after) { after?.asImageBitmap() }
    Box(Modifier.fillMaxSize().transformable(zoom)) {
        Image(beforeImage, beforeLabel, layer, contentScale = ContentScale.Fit)
        if (afterImage != null) {
            Image(afterImage, afterLabel, layer.drawWithContent {
                clipRect(left = size.width * split) { this@drawWithContent.drawContent() }
            }, contentScale = ContentScale.Fit)
            Canvas(Modifier.fillMaxSize().pointerInput(Unit) {
                detectHorizontalDragGestures { change, drag ->
                    change.consume()
                    split = (split + drag / size.width).coerceIn(0f, 1f)
                }
            }) {
                val x = size.width * split
                drawLine(Color.White, Offset(x, 0f), Offset(x, size.height), strokeWidth = 3.dp.toPx())
                drawCircle(Color.White, radius = 12.dp.toPx(), center = Offset(x, size.height / 2))
            }
            Text(beforeLabel, Modifier.align(Alignment.TopStart).padding(8.dp), color = Color.White,
                style = MaterialTheme.typography.labelLarge)
            Text(afterLabel, Modifier.align(Alignment.TopEnd).padding(8.dp), color = Color.White,
                style = MaterialTheme.typography.labelLarge)
        }
    }
}
