package org.adcsr.demo.ui

import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.selection.selectable
import androidx.compose.material3.AlertDialog
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.RadioButton
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.res.stringResource
import org.adcsr.demo.R
import org.adcsr.demo.UiState
import org.adcsr.srcore.ColorFix

/** The backend (fastest available preselected; one that cannot run here says why) and the colour fix. */
@Composable
fun SettingsDialog(state: UiState, onBackend: (String) -> Unit, onColorFix: (ColorFix) -> Unit, onDismiss: () -> Unit) {
    AlertDialog(onDismissRequest = onDismiss, confirmButton = {
        TextButton(onClick = onDismiss) { Text(stringResource(R.string.dismiss)) }
    }, title = { Text(stringResource(R.string.settings)) }, text = {
        Column {
            Text(stringResource(R.string.backend), style = MaterialTheme.typography.titleSmall)
            for (b in state.backends) {
                val why = state.refused[b.id]
                Row(Modifier.selectable(selected = b.id == state.backendId, enabled = why == null) { onBackend(b.id) },
                    verticalAlignment = Alignment.CenterVertically) {
                    RadioButton(selected = b.id == state.backendId, onClick = null, enabled = why == null)
                    Column {
                        Text("${b.label} · ${b.precision}")
                        if (why != null) Text(why, style = MaterialTheme.typography.bodySmall)
                    }
                }
            }
            Text(stringResource(R.string.color_fix), style = MaterialTheme.typography.titleSmall)
            for (fix in ColorFix.values()) {
                Row(Modifier.selectable(selected = fix == state.colorFix) { onColorFix(fix) },
                    verticalAlignment = Alignment.CenterVertically) {
                    RadioButton(selected = fix == state.colorFix, onClick = null)
                    Text(when (fix) {
                        ColorFix.ADAIN -> "AdaIN (mean and std to the photo's; the release's)"
                        ColorFix.WAVELET -> "Wavelet (low frequencies from the photo; photos up to 1 MP)"
                        ColorFix.NONE -> "None"
                    })
                }
            }
        }
    })
}
